/**
 * The node daemon's core (src/cluster/node.ts) with real brick processes (brick-runner.ts) and the local
 * store: it starts the bricks the store places on its node, gives them ports and tells the volume,
 * restarts a brick that dies (on its port, so clients carry on), reports one that keeps dying as failed
 * instead of looping, stops the bricks of a stopped volume, and a daemon started again adopts the bricks
 * that kept serving while it was away.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { LocalStore } from '../src/cluster/local-store.js';
import { NodeDaemon, NODE_DEFAULTS } from '../src/cluster/node.js';
import { ProcessBrickRunner, announceTopology } from '../src/cluster/brick-runner.js';
import { keys, type BrickStatus, type PeerRecord, type VolumeRecord } from '../src/cluster/records.js';
import { realClock } from '../src/common/real-env.js';
import { Volume } from '../src/api/volume.js';
import type { VolumeSpec } from '../src/dht/spec.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { EtcdStore } from '../src/cluster/etcd-store.js';
import { MAIN_JS } from '../src/cli/state.js';
import { etcdAvailable, startEtcd } from './helpers/etcd.js';
import { alive } from '../src/cluster/proc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('node daemon: runs its bricks, restarts one that dies on its port, reports one that keeps dying, stops them with their volume, adopts them after its own restart', { timeout: 180_000 }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-node-'));
  const store = new LocalStore(path.join(base, 'store.json'));
  const logs: string[] = [];
  const log = (level: string, m: string) => logs.push(`${level}: ${m}`);
  const opts = { ...NODE_DEFAULTS, backoffMs: 100, maxExits: 3, reconcileMs: 500 };
  const runner = new ProcessBrickRunner(path.join(base, 'node'), '127.0.0.1');
  let daemon = new NodeDaemon(store, 'n1', runner, announceTopology, realClock, log, opts);
  const pids: number[] = [];
  const status = async (b: string) => JSON.parse((await store.get(keys.brickStatus('nv', b)))?.value ?? 'null') as BrickStatus | null;
  const record = async () => JSON.parse((await store.get(keys.volume('nv')))!.value) as VolumeRecord;
  const until = async (what: string, f: () => Promise<boolean>) => {
    for (let i = 0; i < 300; i++) {
      if (await f()) return;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}; daemon log:\n${logs.join('\n')}`);
  };
  try {
    const v: VolumeRecord = {
      name: 'nv',
      volumeId: randomUUID(),
      secret: randomBytes(16).toString('hex'),
      adminSecret: randomBytes(16).toString('hex'),
      state: 'started',
      bricks: [0, 1].map((i) => ({ name: `nv-client-${i}`, node: 'n1', host: '127.0.0.1', dir: path.join(base, `b${i}`), port: 0 })),
      decommissioned: [],
      version: 0,
    };
    assert.ok(await store.commit([{ key: keys.volume('nv'), value: JSON.stringify(v), ifRev: 0 }]));
    await daemon.start();
    await until('both bricks online', async () => (await status('nv-client-0'))?.state === 'online' && (await status('nv-client-1'))?.state === 'online');
    // Their ports are in the volume's record now, and the bricks were told (a client finds them).
    const r1 = await record();
    for (const b of r1.bricks) assert.ok(b.port >= 49152 && b.port <= 60999, `${b.name} took port ${b.port} of the range`);
    assert.ok(r1.version >= 2, 'the record says a new topology for each port');
    const spec = (r: VolumeRecord): VolumeSpec => ({ name: r.name, volumeId: r.volumeId, secret: r.secret, bricks: r.bricks.map(({ name, host, port }) => ({ name, host, port })), options: { pingTimeout: 5 } });
    const vol = await Volume.connect(spec(r1));
    for (let i = 0; i < 20; i++) await vol.writeFile(`/f${i}`, `file ${i}\n`);

    // A brick killed: started again on its port; the client reads its files again.
    const killed = (await status('nv-client-1'))!;
    pids.push(killed.pid!);
    process.kill(killed.pid!, 'SIGKILL');
    await until('the killed brick restarted', async () => {
      const s = await status('nv-client-1');
      return s?.state === 'online' && s.pid !== killed.pid;
    });
    const again = (await status('nv-client-1'))!;
    pids.push(again.pid!);
    assert.equal(again.port, killed.port, 'restarted on its port');
    assert.equal(again.exits, 1);
    await sleep(1200); // the client dials a brick again a second after it found it down
    for (let i = 0; i < 20; i++) assert.equal(await vol.readFile(`/f${i}`, 'utf8'), `file ${i}\n`);
    await vol.close();

    // The daemon stops; its bricks keep serving; a new daemon adopts them rather than starting others.
    const before = [(await status('nv-client-0'))!.pid!, (await status('nv-client-1'))!.pid!];
    await daemon.close();
    assert.ok(before.every(alive), 'the bricks outlive their daemon');
    daemon = new NodeDaemon(store, 'n1', runner, announceTopology, realClock, log, opts);
    await daemon.start();
    assert.deepEqual(
      Object.values(daemon.bricks()).map((b) => b.pid),
      before,
      'adopted, not started again',
    );
    assert.ok(logs.some((l) => /adopted its running process/.test(l)));

    // A brick that cannot start (its folder is claimed by another volume's brick) is tried maxExits
    // times, then reported failed with the reason, and left alone.
    const claimed = path.join(base, 'claimed');
    fs.mkdirSync(claimed);
    const other = new ProcessBrickRunner(path.join(base, 'other'), '127.0.0.1');
    const otherVol: VolumeRecord = { ...v, name: 'ov', volumeId: randomUUID(), bricks: [{ name: 'ov-client-0', node: 'n2', host: '127.0.0.1', dir: claimed, port: 0 }] };
    const squatter = await other.start(otherVol, otherVol.bricks[0], 0);
    await squatter.stop();
    const cur = await store.get(keys.volume('nv'));
    const withBad = { ...(JSON.parse(cur!.value) as VolumeRecord) };
    withBad.bricks = [...withBad.bricks, { name: 'nv-client-2', node: 'n1', host: '127.0.0.1', dir: claimed, port: 0 }];
    assert.ok(await store.commit([{ key: keys.volume('nv'), value: JSON.stringify(withBad), ifRev: cur!.rev }]));
    await until('the unstartable brick reported failed', async () => (await status('nv-client-2'))?.state === 'failed');
    const failed = (await status('nv-client-2'))!;
    assert.equal(failed.exits, 3);
    assert.match(failed.reason!, /exited 3 times within 60 s; last: did not start: brick directory belongs to volume /);
    await sleep(1500);
    assert.equal((await status('nv-client-2'))!.state, 'failed', 'not tried again');
    assert.ok(logs.some((l) => /^error: brick nv\/nv-client-2 exited 3 times/.test(l)));

    // The volume stopped: its bricks are stopped.
    const cur2 = await store.get(keys.volume('nv'));
    assert.ok(await store.commit([{ key: keys.volume('nv'), value: JSON.stringify({ ...(JSON.parse(cur2!.value) as VolumeRecord), state: 'stopped' }), ifRev: cur2!.rev }]));
    await until('the bricks stopped', async () => (await status('nv-client-0'))?.state === 'stopped' && (await status('nv-client-1'))?.state === 'stopped');
    await until('their processes gone', async () => !before.some(alive));
    assert.deepEqual(daemon.bricks(), {});
  } finally {
    await daemon.close({ bricks: true }).catch(() => {});
    for (const p of pids) if (alive(p)) process.kill(p, 'SIGKILL');
    await store.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('dhtfs node serve on etcd: one daemon per node id, bricks placed on it started, still serving after the daemon is killed, adopted by the next', { skip: !etcdAvailable().ok && 'no etcd here', timeout: 120_000 }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-nodecli-'));
  const etcd = await startEtcd();
  const store = new EtcdStore([etcd.endpoint], { tls: etcd.tls });
  const env = { ...process.env, DHTFS_HOME: base };
  // etcd's client credentials where a host keeps them by default ($DHTFS_HOME/tls/etcd-client): no --etcd-tls.
  fs.cpSync(etcd.tlsDir, path.join(base, 'tls', 'etcd-client'), { recursive: true });
  // As on an etcd member's host: the daemon keeps the file etcd's --client-crl-file reads.
  const etcdCrl = path.join(base, 'etcd-client-crl.pem');
  const serve = () => spawn(process.execPath, [MAIN_JS, 'node', 'serve', '--etcd', etcd.endpoint, '--state-dir', path.join(base, 'node'), '--etcd-crl-file', etcdCrl], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const firstLine = (p: ChildProcess) =>
    new Promise<string>((resolve) => {
      let out = '';
      p.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      p.once('exit', () => resolve(out));
    });
  const procs: ChildProcess[] = [];
  let brickPids: number[] = [];
  try {
    const published = fs.readFileSync(path.join(etcd.caDir, 'crl.pem'), 'utf8');
    await store.commit([{ key: keys.pkiEtcdCrl, value: published }]);
    const a = serve();
    procs.push(a);
    const ready = JSON.parse(await firstLine(a)) as { event: string; id: string };
    assert.equal(ready.event, 'node-ready');
    const peer = JSON.parse((await store.get(keys.peer(ready.id)))!.value) as PeerRecord;
    assert.equal(peer.etcdCert?.name, 'test-client', 'the node reports its etcd client certificate (for peer detach)');
    assert.equal(fs.readFileSync(etcdCrl, 'utf8'), published, "the etcd CA's CRL from the store, where etcd reads it");
    // A second daemon with the same id is refused while the first runs.
    const b = serve();
    let err = '';
    b.stderr!.on('data', (d) => (err += d));
    await once(b, 'exit');
    assert.match(err, /a node daemon with id .* already runs/);
    const v: VolumeRecord = {
      name: 'ev',
      volumeId: randomUUID(),
      secret: randomBytes(16).toString('hex'),
      adminSecret: randomBytes(16).toString('hex'),
      state: 'started',
      bricks: [0, 1].map((i) => ({ name: `ev-client-${i}`, node: ready.id, host: '127.0.0.1', dir: path.join(base, `b${i}`), port: 0 })),
      decommissioned: [],
      version: 0,
    };
    assert.ok(await store.commit([{ key: keys.volume('ev'), value: JSON.stringify(v), ifRev: 0 }]));
    const statuses = async () => (await store.list(keys.brickStatuses('ev'))).map((e) => JSON.parse(e.value) as BrickStatus);
    for (let i = 0; i < 200 && !((await statuses()).length === 2 && (await statuses()).every((s) => s.state === 'online')); i++) await sleep(100);
    brickPids = (await statuses()).map((s) => s.pid!);
    assert.equal(brickPids.length, 2);
    const rec = JSON.parse((await store.get(keys.volume('ev')))!.value) as VolumeRecord;
    const vol = await Volume.connect({ name: 'ev', volumeId: rec.volumeId, secret: rec.secret, bricks: rec.bricks.map(({ name, host, port }) => ({ name, host, port })) });
    await vol.writeFile('/hello', 'from a brick the node daemon runs\n');
    // The daemon killed: the bricks go on serving the client.
    a.kill('SIGKILL');
    await once(a, 'exit');
    assert.equal(await vol.readFile('/hello', 'utf8'), 'from a brick the node daemon runs\n');
    await vol.close();
    // Its presence expires with its lease; the next daemon adopts the bricks.
    let c: ChildProcess | null = null;
    for (let i = 0; i < 40 && !c; i++) {
      const p = serve();
      const l = await firstLine(p);
      if (l.includes('node-ready')) c = p;
      else await sleep(500);
    }
    assert.ok(c, "a daemon started once the dead one's presence expired");
    procs.push(c);
    await sleep(500);
    assert.deepEqual((await statuses()).map((s) => s.pid).sort(), [...brickPids].sort(), 'the running bricks were adopted');
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    for (const p of brickPids) if (alive(p)) process.kill(p, 'SIGKILL');
    await store.close();
    await etcd.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
});
