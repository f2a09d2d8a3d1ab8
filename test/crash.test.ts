/**
 * Crash matrix on real processes: the migrator (a `dhtfs volume migrate` process) is killed with SIGKILL
 * after each step of the safe protocol, under three workloads. After each kill the file's bytes, mode and
 * listing are checked; then a new rebalance run must finish, and every brick is scanned for leftovers.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as xattr from '@napi-rs/xattr';
import { Volume, type FileHandle } from '../src/api/volume.js';
import { MAIN_JS } from '../src/cli/state.js';
import { SAFE_STEPS } from '../src/migration/steps.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { P, scanBrick } from './helpers/disk.js';
import { rotateLayout } from './helpers/layout.js';

let c: Cluster;
let home: string;
const SIZE = 128 * 1024;

before(async () => {
  c = await startCluster(2, { name: 'cv' });
  home = path.join(c.base, 'home');
  const vdir = path.join(home, 'volumes', 'cv');
  fs.mkdirSync(vdir, { recursive: true });
  fs.writeFileSync(path.join(vdir, 'spec.json'), JSON.stringify({ ...c.spec, state: 'started', created: new Date().toISOString() }));
});
after(async () => {
  await c?.stop();
});

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; signal: string | null; out: string }> {
  const p = spawn(process.execPath, [MAIN_JS, ...args], { env: { ...process.env, DHTFS_HOME: home, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  return once(p, 'exit').then(([code, signal]) => ({ code, signal, out }));
}

type WorkloadKind = 'none' | 'writer' | 'readers-writers';

interface Workload {
  stop(): Promise<void>;
  model: Buffer;
  errors: string[];
  ops: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Clients with fds opened before the migration, doing checked I/O until stopped. */
async function startWorkload(kind: WorkloadKind, vol: Volume, p: string, initial: Buffer): Promise<Workload> {
  const w: Workload = { model: Buffer.from(initial), errors: [], ops: 0, stop: async () => {} };
  if (kind === 'none') return w;
  const wfd: FileHandle = await vol.open(p, 'r+');
  const rfd: FileHandle | null = kind === 'readers-writers' ? await vol.open(p, 'r') : null;
  let stop = false;
  const loop = (async () => {
    let seq = 0;
    while (!stop) {
      const off = (seq * 4096 + 64 * (seq % 7)) % (SIZE - 32);
      const rec = Buffer.from(`rec-${String(seq).padStart(8, '0')}-${kind}`.padEnd(32, '#'));
      try {
        await wfd.write(rec, 0, rec.length, off);
        await wfd.sync();
        rec.copy(w.model, off); // acknowledged: must survive
        if (rfd) {
          const b = Buffer.alloc(32);
          await rfd.read(b, 0, 32, off);
          if (!b.equals(rec)) w.errors.push(`stale read at ${off}: ${b.toString()} instead of ${rec.toString()}`);
        }
        w.ops++;
      } catch (e) {
        w.errors.push(`I/O error: ${(e as Error).message}`);
      }
      seq++;
      await sleep(2);
    }
  })();
  w.stop = async () => {
    stop = true;
    await loop;
    await wfd.close();
    await rfd?.close();
  };
  return w;
}

/** Canonical state over all bricks: one data file per name, no S/T bits, no linkto, no copy, no commit record. */
function assertClean(): void {
  const seen = new Map<string, number>();
  c.dirs.forEach((d, i) => {
    for (const [p, o] of scanBrick(d)) {
      if ((o.mode & 0o170000) !== 0o100000) continue;
      assert.equal(o.linkto, null, `stray linkto ${p} on brick ${i}`);
      assert.equal(o.mode & 0o7000, 0, `S or T bits on ${p} on brick ${i}: ${(o.mode & 0o7777).toString(8)}`);
      assert.equal(xattr.getAttributeSync(path.join(d, p), P + 'dhtfs.migration'), null, `commit record left on ${p}`);
      assert.ok(!seen.has(p), `${p} has data on bricks ${seen.get(p)} and ${i}`);
      seen.set(p, i);
    }
    const tmp = path.join(d, '.glusterfs', 'dhtfs-migrate');
    if (fs.existsSync(tmp)) assert.deepEqual(fs.readdirSync(tmp), [], `migration copies left on brick ${i}`);
  });
}

for (const kind of ['none', 'writer', 'readers-writers'] as WorkloadKind[]) {
  for (const step of SAFE_STEPS) {
    test(`migrator SIGKILLed after '${step}', workload ${kind}`, async () => {
      const dir = `/${kind}-${step}`;
      const p = `${dir}/data`;
      const vol = await Volume.connect(c.spec);
      await vol.mkdir(dir);
      const initial = Buffer.alloc(SIZE);
      for (let i = 0; i < SIZE; i += 16) initial.write(`${dir}:${i}`.padEnd(16, '.').slice(0, 16), i);
      await vol.writeFile(p, initial, { mode: 0o640 });
      rotateLayout(
        c.dirs,
        c.spec.bricks.map((b) => b.name),
        dir,
      ); // the file now belongs on the other brick
      const w = await startWorkload(kind, vol, p, initial);
      let r: Awaited<ReturnType<typeof cli>>;
      try {
        await sleep(20);
        r = await cli(['volume', 'migrate', 'cv', p], { DHTFS_FAULT_KILL_AFTER_STEP: step, DHTFS_FAULT_KILL_PATH: p });
        await sleep(50);
      } finally {
        await w.stop();
      }
      assert.equal(r.signal, 'SIGKILL', `the migrator died at ${step}: ${r.out}`);
      assert.ok(kind === 'none' || w.ops > 0, 'the workload did I/O');
      assert.deepEqual(w.errors, [], 'no I/O error and no stale read while the migrator died');
      // Bytes, mode and listing, through a client that was not there before.
      const v2 = await Volume.connect(c.spec);
      assert.ok((await v2.readFile(p)).equals(w.model), 'every acknowledged write is there');
      assert.equal((await v2.stat(p)).mode & 0o7777, 0o640);
      assert.deepEqual(await v2.readdir(dir), ['data']);
      // A new rebalance run finishes, and leaves every brick clean.
      const rb = await cli(['rebalance-run', 'cv', '--restart']);
      assert.equal(rb.code, 0, rb.out);
      assert.match(rb.out, /rebalance completed/);
      assertClean();
      assert.ok((await v2.readFile(p)).equals(w.model));
      await v2.close();
      await vol.close();
    });
  }
}

function procState(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0];
  } catch {
    return 'gone';
  }
}

test('a hung migrator (SIGSTOP after freeze): client I/O goes on after its lease; after SIGCONT it is fenced', async () => {
  const dir = '/hung';
  const p = `${dir}/data`;
  const vol = await Volume.connect(c.spec);
  await vol.mkdir(dir);
  await vol.writeFile(p, Buffer.alloc(SIZE, 7), { mode: 0o600 });
  rotateLayout(
    c.dirs,
    c.spec.bricks.map((b) => b.name),
    dir,
  );
  const h = await vol.open(p, 'r+');
  const mig = spawn(process.execPath, [MAIN_JS, 'volume', 'migrate', 'cv', p, '--lease-ms', '600'], {
    env: { ...process.env, DHTFS_HOME: home, DHTFS_FAULT_STOP_AFTER_STEP: 'freeze' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  mig.stdout.on('data', (d) => (out += d));
  mig.stderr.on('data', (d) => (out += d));
  const exited = once(mig, 'exit');
  try {
    while (procState(mig.pid!) !== 'T') await sleep(10);
    // The migrator froze the file and hung. This write is held by src until the lease runs out...
    await h.write('written while the migrator hangs', 0, undefined, 0);
    await h.sync();
    assert.equal(procState(mig.pid!), 'T', 'the write completed while the migrator was still stopped');
    mig.kill('SIGCONT');
    const [code] = await exited;
    assert.notEqual(code, 0, 'the fenced migrator fails');
    assert.match(out, /EFENCED/, `its next step was refused: ${out}`);
  } finally {
    mig.kill('SIGCONT');
    await h.close();
  }
  const v2 = await Volume.connect(c.spec);
  assert.equal((await v2.readFile(p)).toString('utf8', 0, 32), 'written while the migrator hangs');
  const rb = await cli(['rebalance-run', 'cv', '--restart']);
  assert.equal(rb.code, 0, rb.out);
  assertClean();
  assert.equal((await v2.readFile(p)).toString('utf8', 0, 32), 'written while the migrator hangs');
  await v2.close();
  await vol.close();
});
