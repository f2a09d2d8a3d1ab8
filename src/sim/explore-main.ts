/** npm run explore -- [--k 2] [--delays 0,6,12] [--protocol safe|legacy] */
import { Command } from 'commander';
import { explore } from './explore.js';

const o = new Command()
  .name('dhtfs-explore')
  .description('every schedule of the seed scenario with at most k preemptions, on the real code')
  .option('--k <k>', 'preemption bound', (v) => Number(v), 2)
  .option('--delays <list>', 'when app2 starts, virtual ms, comma-separated', '0,6,12')
  .option('--protocol <p>', 'safe or legacy', 'safe')
  .parse()
  .opts();

const delays = String(o.delays).split(',').map(Number);
const t = performance.now();
const r = await explore(o.k, delays, o.protocol);
console.log(`${r.schedules} schedules with at most ${o.k} preemptions (app2 starting at ${delays.join(', ')} ms), ${o.protocol} protocol: ${r.violations.length} violations, ${((performance.now() - t) / 1000).toFixed(1)} s`);
for (const v of r.violations) console.log(`  ${v}`);
process.exit(r.violations.length ? 1 : 0);
