/**
 * Bounded exhaustive exploration of the seed scenario on the real code: app1 holds an fd from before the
 * migration; a migrator moves the file; app2 opens it, writes, fsyncs and notifies app1, which then
 * reads. Every schedule of the simulated events with at most k preemptions (an event run ahead of an
 * earlier pending one, bytes of one connection staying in order) is run, for app2 starting at each of
 * several points of the migration; S1 is checked in each.
 */
import { Brick } from '../brick/brick.js';
import { DhtClient } from '../dht/client.js';
import type { VolumeSpec } from '../dht/spec.js';
import { Volume } from '../api/volume.js';
import { migrateFile } from '../migration/migrator.js';
import { migrateFileLegacy } from '../migration/legacy.js';
import { COMMIT_HASH_INVALID, rangesOf } from '../dht/layout.js';
import { serveConnection } from '../wire/rpc.js';
import type { Attr } from '../wire/types.js';
import { World } from './world.js';
import { SimNetwork } from './net.js';
import { SimStorage } from './storage.js';

const VID = '5e5e5e5e-0000-4000-8000-000000000002';

export interface ScheduleResult {
  /** Candidates at each choice point, as this schedule met them. */
  choices: number[];
  violation: string | null;
}

/** One run of the seed scenario under a script of choices (choice point index -> candidate index). */
export async function runSchedule(script: Map<number, number>, app2Delay: number, protocol: 'safe' | 'legacy' = 'safe'): Promise<ScheduleResult> {
  const w = new World(1);
  w.window = 2;
  const net = new SimNetwork(w);
  net.maxDelay = 1;
  const names = ['ex-client-0', 'ex-client-1'];
  const st = names.map(() => new SimStorage(w));
  for (let i = 0; i < 2; i++) {
    const b = new Brick(st[i], { name: names[i], volumeId: VID, xattrPrefix: 'trusted.' }, w.clock, w.random);
    b.init();
    await net.listen(`b${i}`, 1, (c) => serveConnection(c, b, { volumeId: VID, secret: 's', adminSecret: 'a', brickName: names[i], random: w.random, log: () => {} }));
  }
  const spec: VolumeSpec = { name: 'ex', volumeId: VID, secret: 's', adminSecret: 'a', bricks: names.map((n, i) => ({ name: n, host: `b${i}`, port: 1 })), options: { minFreeDisk: 0, migrationProtocol: protocol } };
  const vol = (who: string) => new Volume(new DhtClient(spec, net.as(who), w.clock, w.random, { clientName: who }));
  let done = false;
  let violation: string | null = null;
  const choices: number[] = [];
  const body = async () => {
    const admin = vol('admin');
    await admin.client.connect();
    await admin.writeFile('/f', 'OLD-content', { mode: 0o644 });
    const h0 = await admin.open('/f', 'r+');
    await h0.sync();
    await h0.close();
    // The layout changes (as a rebalance's fix-layout would): the file now hashes to the other brick.
    const root = await Promise.all(names.map((n) => admin.client.sv(n).call('lookup', { path: '/' })));
    const layout = names.flatMap((n, i) => (root[i].layout ?? []).map((r) => ({ brick: n, ...r })));
    await Promise.all(names.map((n, i) => admin.client.sv(n).call('setLayout', { path: '/', layout: rangesOf(layout, names[1 - i]).map((r) => ({ ...r, commit: COMMIT_HASH_INVALID })) })));
    const app1 = vol('app1');
    await app1.client.connect();
    const h1 = await app1.open('/f', 'r');
    const mv = vol('migrator');
    await mv.client.connect();
    const app2 = vol('app2');
    await app2.client.connect();
    // From here on, the schedule is explored.
    let point = 0;
    w.chooser = (n) => {
      choices.push(n);
      return script.get(point++) ?? 0;
    };
    let notified!: () => void;
    const notify = new Promise<void>((r) => (notified = r));
    // A migration may fail (a schedule can delay the migrator past its lease: it is fenced); the file
    // must stay correct either way, which is what the reader checks. settleBytes 0: every step, the
    // recopy rounds included, although the file is small.
    const migration = (protocol === 'legacy' ? migrateFileLegacy(mv.client, '/f') : migrateFile(mv.client, '/f', { chunk: 4, settleBytes: 0 })).catch((e) => {
      const code = (e as { code?: string }).code;
      if (code !== 'EFENCED' && code !== 'EBUSY') violation ??= `migration failed: ${(e as Error).message}`;
    });
    const writer = (async () => {
      await w.clock.sleep(app2Delay);
      const h2 = await app2.open('/f', 'r+');
      await h2.write('NEW!', 0, 4, 0);
      await h2.sync();
      await h2.close();
      notified();
    })();
    const reader = (async () => {
      await notify;
      const b = Buffer.alloc(4);
      await h1.read(b, 0, 4, 0);
      if (b.toString() !== 'NEW!') violation = `S1: app1 read ${JSON.stringify(b.toString())} after app2's fsynced write and notify (app2 started at ${app2Delay} ms)`;
    })();
    await Promise.all([migration, writer, reader]);
  };
  body().then(
    () => (done = true),
    (e) => {
      violation ??= `error: ${(e as Error)?.message ?? e}`;
      done = true;
    },
  );
  await w.run(() => done, 60_000);
  if (!done) violation ??= 'deadlock';
  return { choices, violation };
}

export interface ExploreResult {
  schedules: number;
  violations: string[];
}

/** Every schedule with at most `k` preemptions, for each app2 start time. */
export async function explore(k: number, app2Delays: number[], protocol: 'safe' | 'legacy' = 'safe', maxViolations = 5): Promise<ExploreResult> {
  let schedules = 0;
  const violations: string[] = [];
  const dfs = async (script: Map<number, number>, left: number, from: number, delay: number): Promise<void> => {
    const r = await runSchedule(script, delay, protocol);
    schedules++;
    if (r.violation && violations.length < maxViolations) violations.push(`${r.violation}; preemptions at ${JSON.stringify([...script])}`);
    if (left === 0) return;
    for (let p = from; p < r.choices.length; p++) {
      for (let alt = 1; alt < r.choices[p]; alt++) {
        const next = new Map(script);
        next.set(p, alt);
        await dfs(next, left - 1, p + 1, delay);
      }
    }
  };
  for (const d of app2Delays) await dfs(new Map(), k, 0, d);
  return { schedules, violations };
}
