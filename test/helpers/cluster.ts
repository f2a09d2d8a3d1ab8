/** Test clusters of real brick processes on loopback, each brick in its own directory. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { VolumeSpec, VolumeOptions } from '../../src/dht/spec.js';
import { MAIN_JS } from '../../src/cli/state.js';
import { RpcClient } from '../../src/wire/rpc.js';
import { tcpNetwork } from '../../src/wire/tcp.js';

export interface Cluster {
  spec: VolumeSpec;
  dirs: string[];
  base: string;
  procs: (ChildProcess | null)[];
  /** What each brick process wrote to stderr (its pino log), so far. */
  logs: string[];
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts one more brick process of this volume and adds it to the spec (not to the bricks' topology). */
  addBrick(): Promise<number>;
  /** Writes the spec's bricks (and the drained ones) to every brick's topology record. */
  pushTopology(decommissioned?: string[]): Promise<void>;
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

async function startBrick(dir: string, name: string, port: number, volumeId: string, secretFile: string, onLog: (s: string) => void = () => {}, extraArgs: string[] = [], hostId?: string): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(
    process.execPath,
    [MAIN_JS, 'brick', 'serve', '--dir', dir, '--port', String(port), '--name', name, '--volume-id', volumeId, '--secret-file', secretFile, '--admin-secret-file', `${secretFile}.admin`, '--log-level', 'warn', ...extraArgs],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(hostId ? { env: { ...process.env, DHTFS_HOST_ID: hostId } } : {}),
    },
  );
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
    onLog(String(d));
  });
  const rl = createInterface({ input: proc.stdout! });
  const line = await Promise.race([
    once(rl, 'line').then(([l]) => l as string),
    once(proc, 'exit').then(() => {
      throw new Error(`brick ${name} exited: ${stderr}`);
    }),
  ]);
  const ev = JSON.parse(line);
  return { proc, port: ev.port };
}

/**
 * `tlsDir(i)`: brick i serves TLS with the files of that folder (brick serve --tls-dir). `hostId(i)`: brick
 * i takes itself for a host of that identity (DHTFS_HOST_ID), so that no same-host shortcut is taken.
 */
export async function startCluster(n: number, opts: { options?: VolumeOptions; dirs?: string[]; name?: string; tlsDir?: (i: number) => string; hostId?: (i: number) => string } = {}): Promise<Cluster> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-test-'));
  const name = opts.name ?? 'tv';
  const volumeId = randomUUID();
  const secret = randomBytes(16).toString('hex');
  const secretFile = path.join(base, 'secret');
  fs.writeFileSync(secretFile, secret);
  // The admin secret: the spec holds it, so test clients may change the volume (a rebalance sets the commit hash).
  const adminSecret = randomBytes(16).toString('hex');
  fs.writeFileSync(`${secretFile}.admin`, adminSecret);
  const dirs = opts.dirs ?? Array.from({ length: n }, (_, i) => path.join(base, `b${i}`));
  for (const d of dirs) fs.mkdirSync(d, { recursive: true });
  const procs: (ChildProcess | null)[] = [];
  const logs: string[] = dirs.map(() => '');
  const bricks: { name: string; host: string; port: number; dir: string }[] = [];
  for (let i = 0; i < n; i++) {
    const b = await startBrick(dirs[i], `${name}-client-${i}`, 0, volumeId, secretFile, (l) => (logs[i] += l), opts.tlsDir ? ['--tls-dir', opts.tlsDir(i)] : [], opts.hostId?.(i));
    procs.push(b.proc);
    bricks.push({ name: `${name}-client-${i}`, host: '127.0.0.1', port: b.port, dir: dirs[i] });
  }
  const spec: VolumeSpec = { name, volumeId, secret, adminSecret, bricks: [...bricks], options: opts.options };
  let version = 0;
  const c: Cluster = {
    spec,
    dirs,
    base,
    procs,
    logs,
    async kill(i, signal = 'SIGKILL') {
      const p = procs[i];
      if (!p) return;
      procs[i] = null;
      const done = once(p, 'exit');
      p.kill(signal);
      await done;
    },
    async restart(i) {
      await c.kill(i);
      const b = await startBrick(dirs[i], bricks[i].name, bricks[i].port, volumeId, secretFile, (l) => (logs[i] += l), opts.tlsDir ? ['--tls-dir', opts.tlsDir(i)] : [], opts.hostId?.(i));
      procs[i] = b.proc;
    },
    async addBrick() {
      const i = dirs.length;
      const dir = path.join(base, `b${i}`);
      fs.mkdirSync(dir, { recursive: true });
      dirs.push(dir);
      logs.push('');
      const b = await startBrick(dir, `${name}-client-${i}`, 0, volumeId, secretFile, (l) => (logs[i] += l), opts.tlsDir ? ['--tls-dir', opts.tlsDir(i)] : [], opts.hostId?.(i));
      procs.push(b.proc);
      const spec0 = { name: `${name}-client-${i}`, host: '127.0.0.1', port: b.port, dir };
      bricks.push(spec0);
      spec.bricks = [...bricks];
      return i;
    },
    async pushTopology(decommissioned = []) {
      version++;
      spec.version = version;
      spec.decommissioned = decommissioned;
      const t = { version, bricks: bricks.map(({ name: n, host, port }) => ({ name: n, host, port })), decommissioned };
      for (const b of bricks) {
        const r = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId, secret, adminSecret });
        await r.call('setTopology', { topology: t });
        r.close();
      }
    },
    async stop() {
      for (let i = 0; i < procs.length; i++) await c.kill(i, 'SIGTERM');
      // base holds the secret, and the bricks unless the caller gave their folders (those stay its own).
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
  return c;
}

/** A hook that holds a migrator after one named step until `resume()`; `paused` resolves when it gets there. */
export function pauseAfter<S extends string>(step: S): { hook: (s: S) => Promise<void>; paused: Promise<void>; resume: () => void } {
  let reached!: () => void;
  let resume!: () => void;
  const paused = new Promise<void>((r) => (reached = r));
  const resumed = new Promise<void>((r) => (resume = r));
  return {
    paused,
    resume,
    hook: async (s: S) => {
      if (s === step) {
        reached();
        await resumed;
      }
    },
  };
}
