/**
 * npm run sim -- --seeds N [--from S] [--jobs J] [--protocol safe|legacy] [--plant BUG] [--disk MODEL] [--trace]
 * npm run sim -- --seed S --trace        replays one seed exactly and prints its trace
 *
 * With --jobs J, J worker threads run the seeds (worker j the seeds from+j, from+j+J, ...): a seed's
 * run does not depend on which thread runs it, so a failing seed replays alone with --seed.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Command } from 'commander';
import { runSeed, type SimOptions, type SimResult } from './scenario.js';
import type { Knobs } from './options.js';

interface Flags {
  seeds: number;
  from: number;
  seed?: number;
  jobs: number;
  protocol: 'safe' | 'legacy';
  plant?: string;
  disk?: 'sync' | 'journal' | 'strict';
  classic?: boolean;
  names?: boolean;
  namesStrict?: boolean;
  errors?: boolean;
  faults: boolean;
  trace?: boolean;
  stopAtFirst?: boolean;
}

/** What a worker sends back of each seed. */
interface Summary {
  seed: number;
  ops: number;
  migrated: number;
  local: SimResult['local'];
  errors: number;
  dropped: number;
  /** The report of a seed with violations (with its trace when --trace). */
  report: string | null;
}

function base(f: Flags): Omit<SimOptions, 'seed'> {
  const disk = f.disk;
  const strict = !!f.namesStrict;
  const pin = (k: Knobs) => {
    if (disk) k.disk.durability = disk;
    if (strict) k.namer.settle = true;
  };
  return { protocol: f.protocol, plant: f.plant ? [f.plant] : [], faults: f.faults, classic: !!f.classic, names: !!f.names || strict, pin };
}

/** Injected errors: --errors on every seed, --no-errors on none, by default on every fourth seed. */
export function errorsFor(f: { errors?: boolean }, seed: number): boolean {
  return f.errors ?? seed % 4 === 0;
}

function report(f: Flags, r: SimResult, trace: boolean): string {
  const k = r.knobs;
  const lines = [`seed ${r.seed}: ${r.violations.length} violations (${r.ops} operations, ${r.migrated} files migrated under load, ${r.events} events, ${r.virtualMs.toFixed(0)} virtual ms; ${k.topology}, disk ${k.disk.durability})`];
  for (const v of r.violations.slice(0, 10)) lines.push(`  ${v}`);
  if (trace) lines.push(r.trace.join('\n'));
  if (r.violations.length)
    lines.push(
      `  replay: npm run sim -- --seed ${r.seed}${f.protocol !== 'safe' ? ` --protocol ${f.protocol}` : ''}${f.plant ? ` --plant ${f.plant}` : ''}${f.disk ? ` --disk ${f.disk}` : ''}${f.classic ? ' --classic' : ''}${f.names ? ' --names' : ''}${f.errors === true ? ' --errors' : f.errors === false ? ' --no-errors' : ''}${f.namesStrict ? ' --names-strict' : ''}${f.faults ? '' : ' --no-faults'} --trace`,
    );
  return lines.join('\n');
}

async function one(f: Flags, seed: number): Promise<Summary> {
  const r = await runSeed({ ...base(f), seed, errors: errorsFor(f, seed) });
  let errors = 0;
  let dropped = 0;
  for (const st of r.storages ?? []) {
    errors += st.injected.eio + st.injected.enospc;
    dropped += st.injected.dropped;
  }
  return { seed, ops: r.ops, migrated: r.migrated, local: r.local, errors, dropped, report: r.violations.length ? report(f, r, !!f.trace) : null };
}

/** Runs the seeds, in this thread or in --jobs workers, handing each summary to `each` in seed order per worker. */
async function runAll(f: Flags, each: (s: Summary) => boolean): Promise<void> {
  const last = f.from + f.seeds;
  if (f.jobs <= 1) {
    for (let s = f.from; s < last; s++) if (!each(await one(f, s))) return;
    return;
  }
  const workers = Array.from({ length: f.jobs }, (_, j) => new Worker(new URL(import.meta.url), { workerData: { flags: f, first: f.from + j, step: f.jobs, last } }));
  let stop = false;
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          w.on('message', (s: Summary) => {
            if (!stop && !each(s)) {
              stop = true;
              for (const x of workers) void x.terminate();
            }
          });
          w.on('error', reject);
          w.on('exit', () => resolve());
        }),
    ),
  );
}

async function worker(): Promise<void> {
  const { flags, first, step, last } = workerData as { flags: Flags; first: number; step: number; last: number };
  for (let s = first; s < last; s += step) parentPort!.postMessage(await one(flags, s));
}

async function main(): Promise<void> {
  const f = new Command()
    .name('dhtfs-sim')
    .description('deterministic simulation of dhtfs bricks, clients and rebalancer, checked for S1-S5 (src/sim/checkers/, each as soon as what it checks is known) and, with --names, the namespace')
    .option('--seeds <n>', 'how many seeds to run', (v) => Number(v), 100)
    .option('--from <s>', 'first seed', (v) => Number(v), 1)
    .option('--seed <s>', 'run exactly this seed', (v) => Number(v))
    .option('--jobs <j>', 'worker threads running seeds side by side (one per core)', (v) => Number(v), 1)
    .option('--protocol <p>', 'safe or legacy', 'safe')
    .option('--plant <bug>', 'a planted bug (src/common/plant.ts): read-ignores-moved, track-at-enter, local-read-ignores-record, lease-ignores-local-writers, local-write-ignores-record, install-skips-dir-fsync, commit-skips-fsync')
    .option('--disk <model>', 'pin the disk model of every seed: sync, journal or strict (src/sim/storage.ts); default: drawn per seed')
    .option('--classic', "the simulator's fixed knobs from before swarm testing (metadata durable at once, no injected errors)")
    .option('--names', 'the names workload too (src/sim/names.ts): every kind of name under /t, checked after every operator event')
    .option('--errors', 'inject EIO and ENOSPC on storage calls of every seed, with chances drawn per seed (default: every fourth seed)')
    .option('--no-errors', 'no injected EIO and ENOSPC on any seed')
    .option('--names-strict', 'with --names: an operation that failed is settled by looking at its names, and the checks go on')
    .option('--no-faults', 'no crashes, restarts, broken connections or injected errors')
    .option('--trace', 'print the trace of failing seeds (or of --seed)')
    .option('--stop-at-first', 'stop at the first failing seed')
    .parse()
    .opts() as Flags;
  if (f.seed !== undefined) {
    const r = await runSeed({ ...base(f), seed: f.seed, errors: errorsFor(f, f.seed), stacks: true });
    console.log(report(f, r, true));
    process.exit(r.violations.length ? 1 : 0);
  }
  const t = performance.now();
  const cpu0 = process.cpuUsage();
  let ran = 0;
  let ops = 0;
  let failed = 0;
  let migrated = 0;
  let errors = 0;
  let dropped = 0;
  const local = { reads: 0, writes: 0, recorded: 0 };
  let firstBad: number | null = null;
  await runAll(f, (s) => {
    ran++;
    ops += s.ops;
    migrated += s.migrated;
    local.reads += s.local.reads;
    local.recorded += s.local.recorded;
    local.writes += s.local.writes;
    errors += s.errors;
    dropped += s.dropped;
    if (!s.report) return true;
    failed++;
    if (firstBad === null || s.seed < firstBad) firstBad = s.seed;
    console.log(s.report);
    return !f.stopAtFirst;
  });
  const secs = (performance.now() - t) / 1000;
  // CPU time of the process (every worker thread's too): the throughput per core, on a machine shared or not.
  const c = process.cpuUsage(cpu0);
  const cpu = (c.user + c.system) / 1e6;
  console.log(
    `${ran} seeds from ${f.from}: ${failed} with violations${firstBad !== null ? ` (first: seed ${firstBad})` : ''}; ${ops} operations, ${migrated} files migrated under load, ${local.reads} local reads and ${local.writes} local writes (${local.recorded} checks found a commit record and went to the brick), ${errors} injected EIO/ENOSPC, ${dropped} metadata changes dropped by power losses; ${(ops / secs).toFixed(0)} simulated operations/s, ${(ran / secs).toFixed(1)} seeds/s, ${secs.toFixed(1)} s${f.jobs > 1 ? ` (${f.jobs} jobs)` : ''}; per CPU second ${(ops / cpu).toFixed(0)} operations and ${(ran / cpu).toFixed(1)} seeds (${cpu.toFixed(1)} CPU s)`,
  );
  process.exit(failed ? 1 : 0);
}

if (isMainThread) {
  main().catch((e) => {
    console.error(e);
    process.exit(2);
  });
} else {
  worker().catch((e) => {
    console.error(e);
    process.exit(2);
  });
}
