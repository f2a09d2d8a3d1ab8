/**
 * `npm run attack`: the hostile-client suite (test/helpers/attack.ts) for minutes, over several seeds.
 * ATTACK_SECONDS (default 60) per seed, ATTACK_SEEDS (default 3), ATTACK_SEED (the first seed).
 * Prints frames tried, connections, crashes, hangs, peak RSS and the good client's worst wait; exits 1
 * if the brick died, hung, passed the RSS bound or touched anything outside its folder.
 */
import { runAttacks } from '../test/helpers/attack.js';

const RSS_BOUND_MIB = 600;
const seconds = Number(process.env.ATTACK_SECONDS ?? 60);
const seeds = Number(process.env.ATTACK_SEEDS ?? 3);
const first = Number(process.env.ATTACK_SEED ?? (Date.now() & 0xffff) + 1);
let bad = 0;
for (let seed = first; seed < first + seeds; seed++) {
  const t0 = Date.now();
  const rep = await runAttacks({ seconds, seed, rssBoundMiB: RSS_BOUND_MIB, log: (s) => console.log(`  ${s}`) });
  const fail = rep.crashes > 0 || rep.hangs > 0 || rep.peakRssMiB >= RSS_BOUND_MIB || rep.outsideChanged || rep.notes.length > 0;
  if (fail) bad++;
  console.log(
    `seed ${seed}: ${rep.frames.toLocaleString('en')} frames (${rep.answered.toLocaleString('en')} answered), ${rep.connections.toLocaleString('en')} connections, ${rep.crashes} crashes, ${rep.hangs} hangs, ` +
      `peak RSS ${rep.peakRssMiB.toFixed(0)} MiB (bound ${RSS_BOUND_MIB}), worst good-client wait ${rep.worstGoodMs.toFixed(0)} ms, outside ${rep.outsideChanged ? 'CHANGED' : 'untouched'}, ${((Date.now() - t0) / 1000).toFixed(0)} s` +
      (rep.notes.length ? `\n  ${rep.notes.join('\n  ')}` : ''),
  );
}
console.log(bad === 0 ? `attack: ${seeds} seeds, no failure` : `attack: ${bad} of ${seeds} seeds failed`);
process.exit(bad === 0 ? 0 : 1);
