/** Rebalance on real brick processes: add-brick, resume after stop, remove-brick drain. */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Volume } from '../src/api/volume.js';
import { Rebalancer, type Checkpoint, type CheckpointStore } from '../src/rebalance/rebalancer.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { diskLayout, scanBrick } from './helpers/disk.js';
import { searchLayout } from '../src/dht/layout.js';
import { dhtHash } from '../src/dht/hash.js';

function memStore(): CheckpointStore & { saved: Checkpoint | null } {
  return {
    saved: null,
    load() {
      return this.saved ? structuredClone(this.saved) : null;
    },
    save(c) {
      this.saved = structuredClone(c);
    },
  };
}

const content = (p: string) =>
  Buffer.from(
    createHash('sha256')
      .update(p)
      .digest('hex')
      .repeat(8 + (p.length % 5)),
  );

async function fill(vol: Volume, n: number): Promise<string[]> {
  const paths: string[] = [];
  await vol.mkdir('/a/b', { recursive: true });
  await vol.mkdir('/c');
  const dirs = ['', '/a', '/a/b', '/c'];
  for (let i = 0; i < n; i++) paths.push(`${dirs[i % 4]}/file-${i}`);
  for (const p of paths) await vol.writeFile(p, content(p));
  return paths;
}

/** Where each data file is, by scanning the bricks' directories. */
function placement(c: Cluster): Map<string, number[]> {
  const m = new Map<string, number[]>();
  c.dirs.forEach((d, i) => {
    for (const [p, o] of scanBrick(d)) {
      if ((o.mode & 0o170000) !== 0o100000 || o.linkto !== null) continue;
      m.set('/' + p, [...(m.get('/' + p) ?? []), i]);
    }
  });
  return m;
}

/** Every file once, on its hashed brick per the on-disk layout; no linkto or temp leftovers. */
function assertCanonical(c: Cluster, paths: string[], active: number[]): void {
  const names = c.spec.bricks.map((b) => b.name);
  const where = placement(c);
  for (const p of paths) {
    const w = where.get(p);
    assert.equal(w?.length, 1, `${p} has one data file (${w})`);
    const parent = p.slice(0, p.lastIndexOf('/')) || '/';
    const hashed = searchLayout(diskLayout(c.dirs, names, parent), dhtHash(p.slice(p.lastIndexOf('/') + 1)));
    assert.equal(names[w![0]], hashed, `${p} is on its hashed brick`);
    assert.ok(active.includes(w![0]));
  }
  c.dirs.forEach((d) => {
    for (const [p, o] of scanBrick(d)) {
      assert.ok(!(o.linkto !== null && (o.mode & 0o7777) === 0o1000), `no linkto left: ${p} on ${d}`);
      assert.equal(o.mode & 0o6000 && o.mode & 0o1000 ? 'S+T' : 'ok', 'ok', `no S+T bits: ${p}`);
    }
  });
}

test('add-brick and rebalance: at most 1.1 x 1/4 of the files move, all end on their hashed brick', async () => {
  const c = await startCluster(3);
  try {
    const vol = await Volume.connect(c.spec);
    const paths = await fill(vol, 400);
    const before = placement(c);
    await c.addBrick();
    await c.pushTopology();
    const store = memStore();
    const rb = await Volume.connect(c.spec);
    const r = await new Rebalancer(rb.client, { store }).run();
    assert.equal(r.state, 'completed', r.error);
    assert.equal(r.counters.failed, 0);
    assert.equal(r.counters.scanned, 400);
    const after = placement(c);
    const moved = paths.filter((p) => before.get(p)![0] !== after.get(p)![0]).length;
    assert.equal(moved, r.counters.migrated);
    assert.ok(moved / 400 <= 1.1 / 4, `moved ${moved} of 400`);
    assert.ok(moved / 400 >= 0.15, `the new brick got files: ${moved}`);
    assertCanonical(c, paths, [0, 1, 2, 3]);
    // The old client (connected before add-brick) learns the new brick and reads everything.
    for (const p of paths) assert.ok((await vol.readFile(p)).equals(content(p)), p);
    assert.equal((await vol.readdir('/a')).length, 101);
    // New files go to the new brick too.
    await vol.writeFile('/c/after', 'x');
    await vol.close();
    await rb.close();
  } finally {
    await c.stop();
  }
});

test('a stopped rebalance resumes from its checkpoint', async () => {
  const c = await startCluster(2);
  try {
    const vol = await Volume.connect(c.spec);
    const paths = await fill(vol, 300);
    await c.addBrick();
    await c.pushTopology();
    const store = memStore();
    const rb = await Volume.connect(c.spec);
    let migrations = 0;
    const first = await new Rebalancer(rb.client, { store, throttle: 1, shouldStop: () => migrations >= 20, migrate: { onBytes: () => {} }, onProgress: (cp) => (migrations = cp.counters.migrated) }).run();
    assert.equal(first.state, 'stopped');
    assert.ok(first.position, 'a position is saved');
    assert.ok(first.counters.migrated >= 20 && first.counters.migrated < 120, `stopped after ${first.counters.migrated}`);
    const second = await new Rebalancer(rb.client, { store }).run();
    assert.equal(second.state, 'completed', second.error);
    assert.equal(second.runId, first.runId, 'the same run, resumed');
    assert.ok(second.counters.migrated > first.counters.migrated);
    assertCanonical(c, paths, [0, 1, 2]);
    for (const p of paths) assert.ok((await vol.readFile(p)).equals(content(p)));
    await vol.close();
    await rb.close();
  } finally {
    await c.stop();
  }
});

test('remove-brick: the drained brick is left with no data files', async () => {
  const c = await startCluster(3);
  try {
    const vol = await Volume.connect(c.spec);
    const paths = await fill(vol, 240);
    const names = c.spec.bricks.map((b) => b.name);
    await c.pushTopology([names[1]]);
    const rb = await Volume.connect(c.spec);
    const r = await new Rebalancer(rb.client, { store: memStore(), force: true }).run();
    assert.equal(r.state, 'completed', r.error);
    assert.equal(r.counters.failed + r.counters.skipped, 0);
    const where = placement(c);
    for (const p of paths) assert.notEqual(where.get(p)![0], 1, `${p} left brick 1`);
    assertCanonical(c, paths, [0, 2]);
    // New files never land on the drained brick.
    for (let i = 0; i < 30; i++) await vol.writeFile(`/new-${i}`, 'n');
    assert.ok(![...placement(c).entries()].some(([p, w]) => p.startsWith('/new-') && w.includes(1)));
    for (const p of paths) assert.ok((await vol.readFile(p)).equals(content(p)));
    await vol.close();
    await rb.close();
  } finally {
    await c.stop();
  }
});
