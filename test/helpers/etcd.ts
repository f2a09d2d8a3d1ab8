/** A real etcd (Debian's etcd-server) for tests: one member on loopback, or one per host, its data in a temp folder. */
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
  if (!place)
    return fetch(`${endpoint}/health`).then(
      (r) => r.ok,
      () => false,
    );
  const p = place.spawn(process.execPath, ['-e', `fetch(${JSON.stringify(endpoint + '/health')}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`], { stdio: 'ignore' });
  const [code] = await once(p, 'exit');
  return code === 0;
}

export async function startEtcd(place?: EtcdPlace): Promise<TestEtcd> {
  return startEtcdCluster(place ? [place] : [undefined]);
}

/**
 * An etcd cluster of one member per place (on loopback for `undefined`, else on a host of
 * test/helpers/netns.ts, one member per host): `endpoint` names every member, comma-separated; `kill`
 * stops them all (etcd entirely away) and `start` brings the same cluster back.
 */
export async function startEtcdCluster(places: (EtcdPlace | undefined)[]): Promise<TestEtcd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-etcd-'));
  const members: { name: string; place: EtcdPlace | undefined; endpoint: string; peer: string }[] = [];
  for (const [i, place] of places.entries()) {
    const address = place?.address ?? '127.0.0.1';
    // In a namespace of its own, any port is free; on loopback, free ones.
    const cport = place ? 2379 : await freePort();
    const pport = place ? 2380 : await freePort();
    members.push({ name: `m${i}`, place, endpoint: `http://${address}:${cport}`, peer: `http://${address}:${pport}` });
  }
  const initial = members.map((m) => `${m.name}=${m.peer}`).join(',');
  const argsOf = (m: (typeof members)[number]) => [
    '--name',
    m.name,
    '--data-dir',
    path.join(dir, m.name),
    '--listen-client-urls',
    m.endpoint,
    '--advertise-client-urls',
    m.endpoint,
    '--listen-peer-urls',
    m.peer,
    '--initial-advertise-peer-urls',
    m.peer,
    '--initial-cluster',
    initial,
    '--log-level',
    'error',
    '--logger',
    'zap',
  ];
  const procs: ChildProcess[] = [];
  const e: TestEtcd = {
    endpoint: members.map((m) => m.endpoint).join(','),
    proc: null as unknown as ChildProcess,
    async start() {
      // Every member at once: a cluster of several is healthy only once a quorum runs.
      const errs = members.map(() => '');
      procs.length = 0;
      for (const [i, m] of members.entries()) {
        const p = (m.place ? m.place.spawn : spawn)('etcd', argsOf(m), { stdio: ['ignore', 'ignore', 'pipe'] });
        p.stderr!.on('data', (d) => (errs[i] += d));
        procs.push(p);
      }
      e.proc = procs[0];
      for (const [i, m] of members.entries()) {
        for (let k = 0; ; k++) {
          if (procs[i].exitCode !== null) throw new Error(`etcd ${m.name} exited: ${errs[i]}`);
          if (await healthy(m.place, m.endpoint)) break;
          if (k >= 200) throw new Error(`etcd ${m.name} did not come up: ${errs[i]}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
    async kill() {
      await Promise.all(
        procs.map(async (p) => {
          if (p.exitCode !== null || p.signalCode !== null) return;
          const done = once(p, 'exit');
          p.kill('SIGKILL');
          await done;
        }),
      );
    },
    async stop() {
      await e.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await e.start();
  return e;
}
