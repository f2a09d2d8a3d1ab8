/** A real etcd (Debian's etcd-server) for tests: one member on loopback, its data in a temp folder. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from '../../src/cli/state.js';

export interface TestEtcd {
  endpoint: string;
  proc: ChildProcess;
  /** Stops it (SIGKILL) and keeps its data, so that start() brings the same cluster back. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether an etcd binary is here; the reason when not. */
export function etcdAvailable(): { ok: true } | { ok: false; reason: string } {
  const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? { ok: true } : { ok: false, reason: "no etcd here (Debian's etcd-server; scripts/setup.sh installs it as root)" };
}

/** Where etcd runs: loopback of this process's network (the default), or a host of test/helpers/netns.ts. */
export interface EtcdPlace {
  address: string;
  spawn(cmd: string, args: string[], opts: SpawnOptions): ChildProcess;
}

/** Whether an etcd answers its health check, asked from where it runs. */
async function healthy(place: EtcdPlace | undefined, endpoint: string): Promise<boolean> {
  if (!place) return fetch(`${endpoint}/health`).then((r) => r.ok, () => false);
  const p = place.spawn(process.execPath, ['-e', `fetch(${JSON.stringify(endpoint + '/health')}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`], { stdio: 'ignore' });
  const [code] = await once(p, 'exit');
  return code === 0;
}

export async function startEtcd(place?: EtcdPlace): Promise<TestEtcd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-etcd-'));
  const address = place?.address ?? '127.0.0.1';
  // In a namespace of its own, any port is free; on loopback, free ones.
  const cport = place ? 2379 : await freePort();
  const pport = place ? 2380 : await freePort();
  const endpoint = `http://${address}:${cport}`;
  const args = [
    '--name', 'm0', '--data-dir', path.join(dir, 'data'),
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', `http://${address}:${pport}`, '--initial-advertise-peer-urls', `http://${address}:${pport}`,
    '--initial-cluster', `m0=http://${address}:${pport}`, '--log-level', 'error', '--logger', 'zap',
  ];
  const e: TestEtcd = {
    endpoint,
    proc: null as unknown as ChildProcess,
    async start() {
      e.proc = (place ? place.spawn : spawn)('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      e.proc.stderr!.on('data', (d) => (err += d));
      for (let i = 0; i < 200; i++) {
        if (e.proc.exitCode !== null) throw new Error(`etcd exited: ${err}`);
        if (await healthy(place, endpoint)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`etcd did not come up: ${err}`);
    },
    async kill() {
      if (e.proc.exitCode !== null) return;
      const done = once(e.proc, 'exit');
      e.proc.kill('SIGKILL');
      await done;
    },
    async stop() {
      await e.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await e.start();
  return e;
}
