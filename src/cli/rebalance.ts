/** CLI side of rebalance, add-brick and remove-brick: topology pushes, the rebalance process, status. */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Volume } from '../api/volume.js';
import { RpcClient } from '../wire/rpc.js';
import { specNetwork } from '../api/network.js';
import { liveOptionsIn, type Topology } from '../dht/spec.js';
import { Rebalancer, THROTTLE, startFailed, type Checkpoint, type CheckpointStore } from '../rebalance/rebalancer.js';
import type { MigrateOptions } from '../migration/migrator.js';
import type { VolumeSpec } from '../dht/spec.js';
import { MAIN_JS, brickPid, saveVolume, volDir, type StoredVolume } from './state.js';

export function checkpointFile(v: StoredVolume): string {
  return path.join(volDir(v.name), 'rebalance.json');
}

function pidFile(v: StoredVolume): string {
  return path.join(volDir(v.name), 'run', 'rebalance.pid');
}

export function fileStore(file: string): CheckpointStore {
  return {
    load() {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8')) as Checkpoint;
      } catch {
        return null;
      }
    },
    save(c) {
      const tmp = `${file}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(c, null, 1));
      fs.renameSync(tmp, file);
    },
  };
}

export function rebalancePid(v: StoredVolume): number | null {
  try {
    const pid = Number(fs.readFileSync(pidFile(v), 'utf8'));
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/**
 * Writes the volume's topology (bricks, draining bricks, live options) to every brick (new ones included), one version up; connected clients take it up at once.
 * `leaving`: bricks no longer in the volume that are still running (remove-brick commit): they get it too, best effort, so
 * that their clients drop them before they stop.
 */
export async function pushTopology(v: StoredVolume, leaving: StoredVolume['bricks'] = []): Promise<void> {
  v.version = (v.version ?? 0) + 1;
  const t: Topology = {
    version: v.version,
    bricks: v.bricks.map(({ name, host, port }) => ({ name, host, port })),
    decommissioned: v.decommissioned ?? [],
    options: liveOptionsIn(v.options),
  };
  const tell = async (b: StoredVolume['bricks'][number]) => {
    const c = await RpcClient.connect(specNetwork(v), b.host, b.port, { volumeId: v.volumeId, secret: v.secret, adminSecret: v.adminSecret, brickName: b.name, clientName: 'cli' });
    try {
      await c.call('setTopology', { topology: t });
    } finally {
      c.close();
    }
  };
  for (const b of v.bricks) await tell(b);
  saveVolume(v);
  for (const b of leaving) await tell(b).catch(() => {});
}

/** Starts the rebalance process for a volume (detached). */
export function startRebalance(v: StoredVolume, o: { mode: 'full' | 'fix-layout'; force: boolean; throttle: string; restart?: boolean; leaseMs?: number }): number {
  const running = rebalancePid(v);
  if (running) throw new Error(`a rebalance of ${v.name} is already running (pid ${running})`);
  fs.mkdirSync(path.join(volDir(v.name), 'run'), { recursive: true });
  fs.mkdirSync(path.join(volDir(v.name), 'logs'), { recursive: true });
  const pid = spawnRebalanceRun(v.name, o, path.join(volDir(v.name), 'logs', 'rebalance.log'));
  fs.writeFileSync(pidFile(v), String(pid));
  return pid;
}

/** The rebalance process (`rebalance-run`), detached, its output appended to `logFile`; its pid. */
export function spawnRebalanceRun(name: string, o: { mode: 'full' | 'fix-layout'; force: boolean; throttle: string; restart?: boolean; leaseMs?: number }, logFile: string): number {
  const log = fs.openSync(logFile, 'a');
  const args = [MAIN_JS, 'rebalance-run', name, '--mode', o.mode, '--throttle', o.throttle];
  if (o.force) args.push('--force');
  if (o.restart) args.push('--restart');
  if (o.leaseMs) args.push('--lease-ms', String(o.leaseMs));
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log], env: process.env });
  child.unref();
  fs.closeSync(log);
  return child.pid!;
}

export function parseThrottle(t: string): number {
  if (THROTTLE[t] !== undefined) return THROTTLE[t];
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`throttle must be lazy, normal, aggressive or 1..64, not '${t}'`);
  return n;
}

/**
 * Migration options of a migrator process. Fault injection for the crash tests: with
 * DHTFS_FAULT_KILL_AFTER_STEP=<step> the process kills itself with SIGKILL right after that step; with
 * DHTFS_FAULT_STOP_AFTER_STEP=<step> it stops itself (SIGSTOP) there, as a hung migrator; both only for
 * DHTFS_FAULT_KILL_PATH=<path> if set, and with DHTFS_FAULT_ONCE=<file> only in the first process to make
 * that file (node daemons that take a task over: the first one dies, the next one finishes). With
 * DHTFS_FAULT_TERM_AFTER_STEP=<step> and DHTFS_FAULT_TERM_ONCE=<file>, the first process to make that file
 * (of those the faults above spared) sends itself SIGTERM there (a node daemon stopped on purpose).
 */
/** Whether this process is the one whose fault fires: the first to make `once` (no file: every process). */
function firstToFault(once = process.env.DHTFS_FAULT_ONCE): boolean {
  if (!once) return true;
  try {
    fs.writeFileSync(once, String(process.pid), { flag: 'wx' });
    return true;
  } catch {
    return false;
  }
}

export function migratorOptions(leaseMs?: number): MigrateOptions {
  const kill = process.env.DHTFS_FAULT_KILL_AFTER_STEP;
  const hang = process.env.DHTFS_FAULT_STOP_AFTER_STEP;
  const term = process.env.DHTFS_FAULT_TERM_AFTER_STEP;
  const only = process.env.DHTFS_FAULT_KILL_PATH;
  return {
    leaseMs,
    afterStep:
      kill || hang || term
        ? (s, p) => {
            if (only && only !== p) return;
            if ((s === kill || s === hang) && firstToFault()) {
              console.log(`${new Date().toISOString()} fault injection: ${s === kill ? 'SIGKILL' : 'SIGSTOP'} after ${s} of ${p}`);
              process.kill(process.pid, s === kill ? 'SIGKILL' : 'SIGSTOP');
            } else if (s === term && firstToFault(process.env.DHTFS_FAULT_TERM_ONCE)) {
              console.log(`${new Date().toISOString()} fault injection: SIGTERM after ${s} of ${p}`);
              process.kill(process.pid, 'SIGTERM');
            }
          }
        : undefined,
  };
}

/** The rebalance process's body: runs until done, stopped (SIGTERM) or failed. */
export async function runRebalance(v: StoredVolume, o: { mode: 'full' | 'fix-layout'; force: boolean; throttle: string; restart: boolean; leaseMs?: number }): Promise<Checkpoint> {
  let stop = false;
  process.on('SIGTERM', () => (stop = true));
  process.on('SIGINT', () => (stop = true));
  fs.mkdirSync(path.dirname(pidFile(v)), { recursive: true });
  fs.writeFileSync(pidFile(v), String(process.pid));
  let vol: Volume;
  try {
    vol = await Volume.connect(v, { clientName: 'rebalance', log: (l, m) => console.log(`${new Date().toISOString()} ${l} ${m}`) });
  } catch (e) {
    // The run dies before it begins (a brick down): status must say so, not show the previous run's end.
    const store = fileStore(checkpointFile(v));
    const error = (e as Error)?.message ?? String(e);
    const cp = startFailed(store.load(), o.mode, o.force, error, Date.now(), randomUUID());
    store.save(cp);
    fs.rmSync(pidFile(v), { force: true });
    console.log(`${new Date().toISOString()} rebalance failed: ${error}`);
    return cp;
  }
  try {
    const r = new Rebalancer(vol.client, {
      mode: o.mode,
      force: o.force,
      throttle: parseThrottle(o.throttle),
      restart: o.restart,
      store: fileStore(checkpointFile(v)),
      migrate: migratorOptions(o.leaseMs),
      shouldStop: () => stop,
      log: (m) => console.log(`${new Date().toISOString()} ${m}`),
    });
    return await r.run();
  } finally {
    await vol.close();
    fs.rmSync(pidFile(v), { force: true });
  }
}

export interface RebalanceStatus extends Checkpoint {
  volume: string;
  pid: number | null;
  rateBytes: number;
  rateFiles: number;
  etaSeconds: number | null;
  percent: number | null;
  /** Over a cluster: the run's runner died while it ran, and a node daemon is to take it over. */
  awaitingTakeover?: boolean;
}

/**
 * What a file costs beside its bytes, in bytes: the progress and ETA weigh a name moved as this many bytes
 * copied (a small file's migration, several round trips and fsyncs, takes about as long as copying a
 * megabyte on this kind of machine).
 */
export const FILE_COST_BYTES = 1024 * 1024;

/**
 * How far a run is, 0..1, from what it has moved against what its first pass estimated it will move
 * (names handled, weighed by FILE_COST_BYTES, and bytes copied); null while there is no estimate (being
 * made, a fix-layout, or nothing to move).
 */
export function progressOf(c: Checkpoint): number | null {
  const k = c.counters;
  const totalFiles = k.totalFiles ?? 0;
  if (c.estimating || c.mode === 'fix-layout' || totalFiles === 0) return null;
  const done = Math.min(totalFiles, k.migrated + k.skipped + k.failed);
  const bytes = Math.min(k.totalBytes, k.bytes);
  return (done * FILE_COST_BYTES + bytes) / (totalFiles * FILE_COST_BYTES + k.totalBytes);
}

/** Seconds left, from the rate so far (since the first pass ended) and the progress; null if unknown. */
export function etaOf(c: Checkpoint, elapsedMs: number): number | null {
  const p = progressOf(c);
  if (p === null || p <= 0) return null;
  const working = Math.max(0, elapsedMs - (c.estimateMs ?? 0));
  return ((working / p) * (1 - p)) / 1000;
}

export function rebalanceStatus(v: StoredVolume): RebalanceStatus | null {
  const c = fileStore(checkpointFile(v)).load();
  return c ? statusOf(c, v.name, rebalancePid(v)) : null;
}

/** A run's status from its checkpoint and its process (null: none runs now). */
export function statusOf(c: Checkpoint, volume: string, pid: number | null): RebalanceStatus {
  // A run whose process died without saying so failed. While a process runs, the run is on, even if
  // the checkpoint still tells how the previous run ended (the new process has not written yet).
  const state = pid ? 'running' : c.state === 'running' ? 'failed' : c.state;
  const elapsed = state === 'running' ? Date.now() - c.startedAt : c.elapsedMs;
  const secs = Math.max(0.001, elapsed / 1000);
  const rateBytes = c.counters.bytes / secs;
  const rateFiles = c.counters.migrated / secs;
  // Against what this run will move (its first pass's estimate), not the bricks' used bytes.
  const p = progressOf(c);
  const percent = p === null ? null : p * 100;
  const etaSeconds = state !== 'running' ? 0 : etaOf(c, elapsed);
  const error = state === 'failed' && !c.error ? 'the rebalance process died' : c.error;
  return { ...c, state, error, elapsedMs: elapsed, volume, pid, rateBytes, rateFiles, etaSeconds, percent };
}

function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function hms(s: number): string {
  const t = Math.round(s);
  return `${String(Math.floor(t / 3600)).padStart(2, '0')}:${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}:${String(t % 60).padStart(2, '0')}`;
}

export function formatStatus(s: RebalanceStatus, tty: boolean): string {
  const c = s.counters;
  const lines = [
    `Rebalance of volume ${s.volume}: ${s.state}${s.pid ? ` (pid ${s.pid})` : ''}${s.mode === 'fix-layout' ? ', fix-layout only' : ''}${s.force ? ', force' : ''}`,
    `  scanned ${c.scanned}  migrated ${c.migrated}  skipped ${c.skipped}  failed ${c.failed}  directories ${c.dirs}`,
    `  moved ${human(c.bytes)} in ${hms(s.elapsedMs / 1000)}: ${human(s.rateBytes)}/s, ${s.rateFiles.toFixed(1)} files/s` + (s.state === 'running' ? `; ETA ${s.etaSeconds === null ? 'unknown' : hms(s.etaSeconds)}` : ''),
  ];
  if (s.estimating && s.state === 'running') lines.push('  estimating what this run will move (a first pass over the tree)');
  else if (s.mode === 'full' && c.totalFiles !== undefined) lines.push(`  this run moves about ${c.totalFiles} names, ${human(c.totalBytes)} of data (first-pass estimate)${s.percent !== null ? `: ${s.percent.toFixed(0)}% done` : ''}`);
  if (s.position && s.state !== 'completed') lines.push(`  at ${s.position}`);
  if (s.error) lines.push(`  error: ${s.error}`);
  if (s.awaitingTakeover) lines.push("  its runner died: a node daemon takes the run over from this checkpoint once the runner's claim lapses");
  if (tty && s.percent !== null && s.state === 'running') {
    const w = 30;
    const k = Math.round((s.percent / 100) * w);
    lines.push(`  [${'#'.repeat(k)}${'-'.repeat(w - k)}] ${s.percent.toFixed(0)}%`);
  }
  return lines.join('\n');
}

/**
 * remove-brick commit: how long the removed bricks keep serving after the topology without them reached
 * every brick (connected clients are told at once and re-read it within milliseconds; calls they sent
 * before finish), before they are stopped.
 */
export const REMOVED_BRICK_GRACE_MS = 1000;

/** What remove-brick does to a volume, on one host (localDrain) or over a cluster (cluster-tasks.ts). */
export interface DrainOps {
  name: string;
  bricks: { name: string; host: string; port: number }[];
  decommissioned: string[];
  /** The client spec, with the admin secret. */
  spec: VolumeSpec;
  /** The topology with these bricks draining (one version up), told to every brick. */
  setDraining(bricks: string[]): Promise<void>;
  /** Starts the drain's run (a rebalance with force, from the start; `leaseMs`, its migration lease); its pid. */
  startRun(leaseMs?: number): Promise<number>;
  status(): Promise<RebalanceStatus | null>;
  /** Asks a running drain to stop, if one runs. */
  stopRun(): Promise<void>;
  /** Takes the bricks out of the volume: the topology without them to every brick (them too), a grace, then they stop. */
  remove(bricks: string[]): Promise<void>;
}

export function localDrain(v: StoredVolume): DrainOps {
  return {
    name: v.name,
    bricks: v.bricks,
    decommissioned: v.decommissioned ?? [],
    spec: v,
    setDraining: async (bricks) => {
      v.decommissioned = bricks;
      await pushTopology(v);
    },
    startRun: async (leaseMs) => startRebalance(v, { mode: 'full', force: true, throttle: 'normal', restart: true, leaseMs }),
    status: async () => rebalanceStatus(v),
    stopRun: async () => {
      const pid = rebalancePid(v);
      if (pid) process.kill(pid, 'SIGTERM');
    },
    remove: async (bricks) => {
      // The topology without them first, to them too, then a grace for clients to take it up: a brick
      // stopped while clients still use it fails their calls in flight (ENOTCONN).
      const leaving = v.bricks.filter((b) => bricks.includes(b.name));
      const pids = bricks.map((b) => brickPid(v, b)).filter((p): p is number => !!p);
      v.bricks = v.bricks.filter((b) => !bricks.includes(b.name));
      v.decommissioned = (v.decommissioned ?? []).filter((b) => !bricks.includes(b));
      await pushTopology(v, leaving);
      if (pids.length) await new Promise((r) => setTimeout(r, REMOVED_BRICK_GRACE_MS));
      for (const pid of pids) process.kill(pid, 'SIGTERM');
    },
  };
}
