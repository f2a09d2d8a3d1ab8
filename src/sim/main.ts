/**
 * npm run sim -- --seeds N [--from S] [--protocol safe|legacy] [--plant BUG] [--trace]
 * npm run sim -- --seed S --trace        replays one seed exactly and prints its trace
 */
import { Command } from 'commander';
import { runSeed, type SimResult } from './scenario.js';
import type { Knobs } from './options.js';

const program = new Command()
  .name('dhtfs-sim')
  .description('deterministic simulation of dhtfs bricks, clients and rebalancer, checked for S1, S2, S4, S5')
  .option('--seeds <n>', 'how many seeds to run', (v) => Number(v), 100)
  .option('--from <s>', 'first seed', (v) => Number(v), 1)
  .option('--seed <s>', 'run exactly this seed', (v) => Number(v))
  .option('--protocol <p>', 'safe or legacy', 'safe')
  .option('--plant <bug>', 'a planted bug (src/common/plant.ts): read-ignores-moved, track-at-enter, local-read-ignores-record, lease-ignores-local-writers, local-write-ignores-record, install-skips-dir-fsync, commit-skips-fsync')
  .option('--disk <model>', 'pin the disk model of every seed: sync, journal or strict (src/sim/storage.ts); default: drawn per seed')
  .option('--classic', "the simulator's fixed knobs from before swarm testing (metadata durable at once, no injected errors)")
  .option('--no-faults', 'no crashes, restarts or broken connections')
  .option('--trace', 'print the trace of failing seeds (or of --seed)')
  .option('--stop-at-first', 'stop at the first failing seed')
  .parse();

const o = program.opts();

function report(r: SimResult, trace: boolean): void {
  console.log(`seed ${r.seed}: ${r.violations.length} violations (${r.ops} operations, ${r.migrated} files migrated under load, ${r.events} events, ${r.virtualMs.toFixed(0)} virtual ms)`);
  for (const v of r.violations.slice(0, 10)) console.log(`  ${v}`);
  if (trace) console.log(r.trace.join('\n'));
  if (r.violations.length) console.log(`  replay: npm run sim -- --seed ${r.seed}${o.protocol !== 'safe' ? ` --protocol ${o.protocol}` : ''}${o.plant ? ` --plant ${o.plant}` : ''}${o.disk ? ` --disk ${o.disk}` : ''}${o.classic ? ' --classic' : ''} --trace`);
}

async function main(): Promise<void> {
  const disk = o.disk as 'sync' | 'journal' | 'strict' | undefined;
  const base = { protocol: o.protocol as 'safe' | 'legacy', plant: o.plant ? [o.plant] : [], faults: o.faults, classic: !!o.classic, pin: disk ? (k: Knobs) => void (k.disk.durability = disk) : undefined };
  if (o.seed !== undefined) {
    const r = await runSeed({ ...base, seed: o.seed });
    report(r, true);
    process.exit(r.violations.length ? 1 : 0);
  }
  const t = performance.now();
  let ops = 0;
  let failed = 0;
  let migrated = 0;
  const local = { reads: 0, writes: 0, recorded: 0 };
  let firstBad: number | null = null;
  const injected = { errors: 0, dropped: 0 };
  for (let s = o.from; s < o.from + o.seeds; s++) {
    const r = await runSeed({ ...base, seed: s });
    ops += r.ops;
    migrated += r.migrated;
    local.reads += r.local.reads;
    local.recorded += r.local.recorded;
    local.writes += r.local.writes;
    for (const st of r.storages ?? []) {
      injected.errors += st.injected.eio + st.injected.enospc;
      injected.dropped += st.injected.dropped;
    }
    if (r.violations.length) {
      failed++;
      firstBad ??= s;
      report(r, !!o.trace);
      if (o.stopAtFirst) break;
    }
  }
  const secs = (performance.now() - t) / 1000;
  console.log(`${o.seeds} seeds from ${o.from}: ${failed} with violations${firstBad !== null ? ` (first: seed ${firstBad})` : ''}; ${ops} operations, ${migrated} files migrated under load, ${local.reads} local reads and ${local.writes} local writes (${local.recorded} checks found a commit record and went to the brick), ${injected.errors} injected EIO/ENOSPC, ${injected.dropped} metadata changes dropped by power losses; ${(ops / secs).toFixed(0)} simulated operations/s, ${(o.seeds / secs).toFixed(1)} seeds/s, ${secs.toFixed(1)} s`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
