/**
 * Long tasks over a cluster (issue 19, docs/CLUSTER.md "Tasks"): rebalance and remove-brick's drain, and
 * migrate. One run per volume at a time, held by a claim on tasks/<vol>/owner (its runner's lease: a run
 * whose process or daemon dies frees it within the TTL), what the task is in tasks/<vol>/task, its
 * checkpoint in tasks/<vol>/checkpoint. A `rebalance start` from any host resumes a stopped run; a run whose
 * claim lapsed while running is taken over by a node daemon (src/cluster/tasks.ts, with `takeOverTask`
 * here as what it runs); `stop` from any host asks the run, wherever it is, through the store.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { keys, parseVolume, type VolumeRecord } from '../cluster/records.js';
import { update, type Claim, type Store } from '../cluster/store.js';
import { announceWith, withCliTls } from './cluster-pki.js';
import { alive } from '../cluster/proc.js';
import type { TaskOwner, TaskRecord, TaskRun } from '../cluster/tasks.js';
import { Volume } from '../api/volume.js';
import { Rebalancer, startFailed, type Checkpoint, type CheckpointStore } from '../rebalance/rebalancer.js';
import { MIGRATION_LEASE_MS } from '../migration/migrator.js';
import { home } from './state.js';
import { REMOVED_BRICK_GRACE_MS, migratorOptions, parseThrottle, spawnRebalanceRun, statusOf, type DrainOps, type RebalanceStatus } from './rebalance.js';
import { openStore } from './node.js';
import { clusterConfig, etcdAccess, sleep, specOf, volumeRecord, withStore } from './cluster.js';

/**
 * How long a dead runner's claim outlives it, in seconds: then a node daemon takes its task over.
 * DHTFS_TASK_TTL_S changes it (tests make it short); the daemons' claims use the same.
 */
export function taskTtlSec(): number {
  const n = Number(process.env.DHTFS_TASK_TTL_S ?? 10);
  return Number.isFinite(n) && n >= 1 ? n : 10;
}

/** How long `rebalance start` waits for its process to hold the task's claim. */
const CLAIM_WAIT_MS = 20_000;

const stopKey = (vol: string) => `tasks/${vol}/stop`;
const taskKey = (vol: string) => `tasks/${vol}/task`;

export interface RunOptions {
  mode: 'full' | 'fix-layout';
  force: boolean;
  throttle: string;
  restart?: boolean;
  leaseMs?: number;
}

/**
 * volume rebalance NAME start (and remove-brick's drain): what the task is, in the store (a node that
 * takes it over runs it so), then the run's process on this host, detached; its output in $DHTFS_HOME/logs.
 */
export async function clusterRebalanceStart(name: string, o: RunOptions, kind: TaskRecord['kind'] = 'rebalance', bricks?: string[]): Promise<number> {
  parseThrottle(o.throttle);
  await withStore(async (s) => {
    await volumeRecord(s, name);
    const owner = await s.get(keys.task(name));
    if (owner) {
      const w = JSON.parse(owner.value) as TaskOwner;
      throw new Error(`a rebalance of ${name} is already running (pid ${w.pid} on ${w.host})`);
    }
    const task: TaskRecord = { kind, mode: o.mode, force: o.force, throttle: o.throttle, ...(o.leaseMs ? { leaseMs: o.leaseMs } : {}), ...(bricks ? { bricks } : {}) };
    await s.commit([
      { key: taskKey(name), value: JSON.stringify(task) },
      { key: keys.handedOn(name), value: null },
    ]);
  });
  const logs = path.join(home(), 'logs');
  fs.mkdirSync(logs, { recursive: true });
  const log = path.join(logs, `rebalance-${name}.log`);
  const pid = spawnRebalanceRun(name, o, log);
  // Started once it holds the task's claim: until then `status` would show the previous run's end.
  await withStore(async (s) => {
    const deadline = Date.now() + CLAIM_WAIT_MS;
    for (;;) {
      const owner = await s.get(keys.task(name));
      if (owner && (JSON.parse(owner.value) as TaskOwner).pid === pid) return;
      if (!alive(pid)) throw new Error(`the rebalance process ended before it took the task (see ${log})`);
      if (Date.now() > deadline) throw new Error(`the rebalance process (pid ${pid}) did not take the task within ${CLAIM_WAIT_MS / 1000} s (see ${log})`);
      await sleep(100);
    }
  });
  return pid;
}

/**
 * A run of the volume's task under `claim` (held by the caller, released by it): a first run clears a
 * stop left from before; a run taken over keeps it (a run stopped while its runner died stops at once).
 * `handOn` true (its node daemon is stopping) stops it at a file boundary with its checkpoint still
 * `running` (unless a stop was asked too), for another daemon to take over.
 */
async function runUnderClaim(s: Store, name: string, o: RunOptions, claim: Claim, takeover: boolean, log: (m: string) => void, stopped: () => boolean, handOn: () => boolean = () => false): Promise<Checkpoint> {
  // The checkpoint: read once, written behind (the last one wins; flushed at the end).
  const ck = keys.checkpoint(name);
  const first = await s.get(ck);
  let cached: Checkpoint | null = first ? (JSON.parse(first.value) as Checkpoint) : null;
  let writing: Promise<unknown> = Promise.resolve();
  let stop = false;
  const store: CheckpointStore = {
    load: () => cached,
    save: (cp) => {
      // Stopped to be handed on: the next runner goes on from here, as after a takeover.
      if (cp.state === 'stopped' && handOn() && !stop) cp = { ...cp, state: 'running' };
      cached = cp;
      const value = JSON.stringify(cp);
      writing = writing.then(() => s.commit([{ key: ck, value }]).catch((e) => log(`checkpoint not saved: ${(e as Error).message}`)));
    },
  };
  if (takeover) stop = (await s.get(stopKey(name))) !== null;
  else await s.commit([{ key: stopKey(name), value: null }]);
  const unwatch = await s.watch(stopKey(name), (e) => (stop = stop || e.entry !== null));
  void claim.lost.then(() => {
    log('lost the task claim (the store did not hear from this runner for its TTL): stopping');
    stop = true;
  });
  try {
    const v = await volumeRecord(s, name);
    let vol: Volume;
    try {
      vol = await Volume.connect(await withCliTls(s, specOf(v, true)), { clientName: 'rebalance', log: (l, m) => log(`${l} ${m}`) });
    } catch (e) {
      const error = (e as Error)?.message ?? String(e);
      const cp = startFailed(store.load(), o.mode, o.force, error, Date.now(), randomUUID());
      store.save(cp);
      log(`rebalance failed: ${error}`);
      return cp;
    }
    try {
      const r = new Rebalancer(vol.client, { mode: o.mode, force: o.force, throttle: parseThrottle(o.throttle), restart: !takeover && !!o.restart, store, migrate: migratorOptions(o.leaseMs), shouldStop: () => stop || stopped() || handOn(), log });
      const end = await r.run();
      return cached ?? end; // as saved: `running` when handed on
    } finally {
      await vol.close();
    }
  } finally {
    await writing;
    await unwatch();
  }
}

/** The rebalance process over a cluster: runs under the volume's task claim until done, stopped or failed. */
export async function clusterRunRebalance(name: string, o: RunOptions & { restart: boolean }): Promise<Checkpoint> {
  const c = clusterConfig();
  if (!c) throw new Error('not in a cluster');
  const s = await openStore(etcdAccess(c));
  const log = (m: string) => console.log(`${new Date().toISOString()} ${m}`);
  const claim = await s.claim(keys.task(name), JSON.stringify({ host: os.hostname(), pid: process.pid } satisfies TaskOwner), taskTtlSec());
  if (!claim) {
    await s.close();
    throw new Error(`a rebalance of ${name} is already running`);
  }
  let term = false;
  process.on('SIGTERM', () => (term = true));
  try {
    return await runUnderClaim(s, name, o, claim, false, log, () => term);
  } finally {
    await claim.release();
    await s.close();
  }
}

/** What a node daemon runs when it takes a task over (src/cluster/tasks.ts): the task on from its checkpoint. */
export function takeOverTask(s: Store, log: (level: 'info' | 'warn' | 'error', m: string) => void): TaskRun {
  return async (vol, task, claim, { handedOn, handOn }) => {
    // The old runner's migrations in flight hold their files' leases on the bricks until leaseMs after it
    // last renewed them; its claim lapsed a TTL after its last renewal, which was at most a third of the
    // TTL before it died. Waiting out the rest (and half a second) lets this run move those files rather
    // than find them busy (and skip them, which leaves a drain unfinished). A run handed on left none.
    const rest = handedOn ? 0 : (task.leaseMs ?? MIGRATION_LEASE_MS) + 500 - ((taskTtlSec() * 2) / 3) * 1000;
    // Not cut short by a stop of this daemon: a task handed on must leave no lease of the old runner's.
    if (rest > 0) await sleep(rest);
    if (handOn()) return 'running'; // this daemon stopped before the run began: on as it was
    const cp = await runUnderClaim(
      s,
      vol,
      { mode: task.mode, force: task.force, throttle: task.throttle, leaseMs: task.leaseMs },
      claim,
      true,
      (m) => log('info', `${task.kind} ${vol}: ${m}`),
      () => false,
      handOn,
    );
    return cp.state;
  };
}

/** volume rebalance NAME status over a cluster: the checkpoint, and whether a runner holds the task (and which). */
export async function clusterRebalanceStatus(name: string): Promise<(RebalanceStatus & { runner?: TaskOwner; awaitingTakeover?: boolean }) | null> {
  return withStore(async (s) => {
    await volumeRecord(s, name);
    const cp = await s.get(keys.checkpoint(name));
    if (!cp) return null;
    const owner = await s.get(keys.task(name));
    const runner = owner ? (JSON.parse(owner.value) as TaskOwner) : undefined;
    const c = JSON.parse(cp.value) as Checkpoint;
    // Its runner died while it ran: a node daemon takes it over once the claim lapses (not failed).
    if (!runner && c.state === 'running' && (await s.get(taskKey(name)))) return { ...statusOf(c, name, -1), pid: null, awaitingTakeover: true };
    return { ...statusOf(c, name, runner?.pid ?? null), ...(runner ? { runner } : {}) };
  });
}

/**
 * volume rebalance NAME stop over a cluster: asks the run, wherever it is, through the store; a run whose
 * runner died and that waits for a node daemon to take it over is stopped there at once (the request is
 * kept: the run is marked stopped now, and a taker would stop at once too).
 */
export async function clusterRebalanceStop(name: string): Promise<TaskOwner | null> {
  return withStore(async (s) => {
    const owner = await s.get(keys.task(name));
    const cp = await s.get(keys.checkpoint(name));
    const c = cp ? (JSON.parse(cp.value) as Checkpoint) : null;
    if (!owner && !(c?.state === 'running' && (await s.get(taskKey(name))))) throw new Error(`no rebalance of ${name} is running`);
    await s.commit([{ key: stopKey(name), value: '1' }]);
    if (owner) return JSON.parse(owner.value) as TaskOwner;
    // Compare-and-set: a taker that wrote the checkpoint meanwhile stops by itself.
    await s.commit([{ key: keys.checkpoint(name), value: JSON.stringify({ ...c, state: 'stopped' }), ifRev: cp!.rev }]);
    return null;
  });
}

/** The record changed by `f` with its topology one version up, then told to its bricks (and to `leaving`). */
async function changeTopology(s: Store, name: string, f: (v: VolumeRecord) => VolumeRecord, leaving: VolumeRecord['bricks'] = []): Promise<VolumeRecord> {
  const v = (await update<VolumeRecord>(s, keys.volume(name), (cur) => {
    if (!cur) throw new Error(`volume ${name} does not exist`);
    return { ...f(cur), version: cur.version + 1 };
  }))!;
  await announceWith(s)(v, leaving);
  return v;
}

/**
 * remove-brick over a cluster: the drain is the volume's task (kind remove-brick), taken over like a
 * rebalance; commit tells the topology without the bricks to every brick, the leaving ones too, waits a
 * grace for clients to take it up, and takes them out of the record: their node daemons stop them.
 */
export async function clusterDrain(name: string): Promise<DrainOps> {
  const { v, spec } = await withStore(async (s) => {
    const v = await volumeRecord(s, name);
    return { v, spec: await withCliTls(s, specOf(v, true)) };
  });
  const d: DrainOps = {
    name,
    bricks: v.bricks,
    decommissioned: v.decommissioned,
    spec,
    setDraining: (list) => withStore(async (s) => void (await changeTopology(s, name, (cur) => ({ ...cur, decommissioned: list })))),
    // The bricks draining as the command left them (start adds its own to d.decommissioned first).
    startRun: (leaseMs) => clusterRebalanceStart(name, { mode: 'full', force: true, throttle: 'normal', restart: true, leaseMs }, 'remove-brick', d.decommissioned),
    status: () => clusterRebalanceStatus(name),
    stopRun: async () => {
      await clusterRebalanceStop(name).catch(() => {});
    },
    remove: (bricks) =>
      withStore(async (s) => {
        const e = await s.get(keys.volume(name));
        if (!e) throw new Error(`volume ${name} does not exist`);
        const cur = parseVolume(e.key, e.value);
        const leaving = cur.bricks.filter((b) => bricks.includes(b.name));
        const without = (x: VolumeRecord): VolumeRecord => ({ ...x, bricks: x.bricks.filter((b) => !bricks.includes(b.name)), decommissioned: x.decommissioned.filter((b) => !bricks.includes(b)) });
        // The topology without them reaches every brick, the leaving ones too, before their node daemons stop them.
        const next = { ...without(cur), version: cur.version + 1 };
        await announceWith(s)(next, leaving);
        await sleep(REMOVED_BRICK_GRACE_MS);
        // Compare-and-set on the record read; changed meanwhile (an option set), the same change on it as it is now, told again.
        if (!(await s.commit([{ key: keys.volume(name), value: JSON.stringify(next), ifRev: e.rev }]))) await changeTopology(s, name, without, leaving);
        await s.commit(leaving.map((b) => ({ key: keys.brickStatus(name, b.name), value: null }))).catch(() => {});
      }),
  };
  return d;
}

/** The spec `volume migrate` uses over a cluster (with the admin secret: migration calls need it). */
export async function clusterAdminSpec(name: string) {
  return withStore(async (s) => withCliTls(s, specOf(await volumeRecord(s, name), true)));
}
