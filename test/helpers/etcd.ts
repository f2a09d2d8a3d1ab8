/**
 * A real etcd (Debian's etcd-server) for tests: one member on loopback, or one per host, its data in a temp
 * folder; on TLS with client certificates, as a cluster runs it (docs/SECURITY.md "etcd"): client and peer
 * URLs https, --client-cert-auth and --peer-client-cert-auth against an etcd CA made once per test process
 * with dhtfs's own `cert issue etcd-server/etcd-client` code.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import https from 'node:https';
import { freePort } from '../../src/cli/state.js';
import { issue } from '../../src/cli/cert.js';
import type { EtcdTls } from '../../src/cluster/etcd-store.js';

export interface TestEtcd {
  endpoint: string;
  /** A folder of etcd client credentials (ca.pem, cert.pem, key.pem): `--etcd-tls` of the CLI and the node daemon. */
  tlsDir: string;
  /** The same, read: for an EtcdStore made in the test's process. */
  tls: EtcdTls;
  /** The etcd CA's folder (an `openssl ca` folder as cert.ts keeps it); etcd reads its crl.pem as --client-crl-file. */
  caDir: string;
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

/** The test process's etcd CA (made once): its folder, and its client credentials. */
let testCa: { dir: string; client: string } | null = null;
const serverCerts = new Map<string, string>();

function etcdCa(): { dir: string; client: string } {
  if (!testCa) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-etcd-ca-'));
    const client = path.join(dir, 'client');
    issue('etcd-client', 'test-client', client, [], false, path.join(dir, 'ca'));
    testCa = { dir, client };
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return testCa;
}

/** A member's certificate for `address` (one per address in this process). */
function serverCert(address: string): string {
  let d = serverCerts.get(address);
  if (!d) {
    const ca = etcdCa();
    d = path.join(ca.dir, `server-${address}`);
    issue('etcd-server', `etcd-${address}`, d, [address, 'localhost'], false, path.join(ca.dir, 'ca'));
    serverCerts.set(address, d);
  }
  return d;
}

/** Whether an etcd answers its health check (over TLS, with the test's client certificate), asked from where it runs. */
async function healthy(place: EtcdPlace | undefined, endpoint: string, tlsDir: string): Promise<boolean> {
  const script = `const fs = require('node:fs'), https = require('node:https'), d = ${JSON.stringify(tlsDir)};
https.get(${JSON.stringify(endpoint + '/health')}, { ca: fs.readFileSync(d + '/ca.pem'), cert: fs.readFileSync(d + '/cert.pem'), key: fs.readFileSync(d + '/key.pem') }, (r) => { r.resume(); process.exit(r.statusCode === 200 ? 0 : 1); }).on('error', () => process.exit(1));`;
  if (!place) {
    const f = (n: string) => fs.readFileSync(path.join(tlsDir, n));
    return new Promise((resolve) =>
      https
        .get(`${endpoint}/health`, { ca: f('ca.pem'), cert: f('cert.pem'), key: f('key.pem') }, (r) => {
          r.resume();
          resolve(r.statusCode === 200);
        })
        .on('error', () => resolve(false)),
    );
  }
  const p = place.spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  const [code] = await once(p, 'exit');
  return code === 0;
}

/** Options of a test etcd: `crlFile`, the file its --client-crl-file names (default: the etcd CA's own crl.pem). */
export interface EtcdOptions {
  crlFile?: string;
}

export async function startEtcd(place?: EtcdPlace, o: EtcdOptions = {}): Promise<TestEtcd> {
  return startEtcdCluster(place ? [place] : [undefined], o);
}

/**
 * An etcd cluster of one member per place (on loopback for `undefined`, else on a host of
 * test/helpers/netns.ts, one member per host): `endpoint` names every member, comma-separated; `kill`
 * stops them all (etcd entirely away) and `start` brings the same cluster back.
 */
export async function startEtcdCluster(places: (EtcdPlace | undefined)[], o: EtcdOptions = {}): Promise<TestEtcd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-etcd-'));
  const members: { name: string; place: EtcdPlace | undefined; endpoint: string; peer: string; certs: string }[] = [];
  const ca = etcdCa();
  // etcd reads its --client-crl-file at each handshake: one of its own starts as the CA's CRL.
  if (o.crlFile && !fs.existsSync(o.crlFile)) fs.copyFileSync(path.join(ca.dir, 'ca', 'crl.pem'), o.crlFile);
  for (const [i, place] of places.entries()) {
    const address = place?.address ?? '127.0.0.1';
    // In a namespace of its own, any port is free; on loopback, free ones.
    const cport = place ? 2379 : await freePort();
    const pport = place ? 2380 : await freePort();
    members.push({ name: `m${i}`, place, endpoint: `https://${address}:${cport}`, peer: `https://${address}:${pport}`, certs: serverCert(address) });
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
    ...['', 'peer-'].flatMap((p) => [`--${p}cert-file`, path.join(m.certs, 'cert.pem'), `--${p}key-file`, path.join(m.certs, 'key.pem'), `--${p}trusted-ca-file`, path.join(m.certs, 'ca.pem'), `--${p}client-cert-auth`]),
    '--client-crl-file',
    o.crlFile ?? path.join(ca.dir, 'ca', 'crl.pem'),
    '--log-level',
    'error',
    '--logger',
    'zap',
  ];
  const procs: ChildProcess[] = [];
  const e: TestEtcd = {
    endpoint: members.map((m) => m.endpoint).join(','),
    tlsDir: ca.client,
    caDir: path.join(ca.dir, 'ca'),
    tls: { ca: fs.readFileSync(path.join(ca.client, 'ca.pem')), cert: fs.readFileSync(path.join(ca.client, 'cert.pem')), key: fs.readFileSync(path.join(ca.client, 'key.pem')) },
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
          if (await healthy(m.place, m.endpoint, ca.client)) break;
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
