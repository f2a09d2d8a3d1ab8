/**
 * A file that exists is never reported missing while a brick is added (issue 20, item 8): clients that
 * adopt the new topology meet directories the new brick does not have yet, below directories it does
 * not have either; they make its copies parents first (a lookup below them answered ENOENT for the
 * parent for about a second, until then). Through the library, as the clients that made the tree and as
 * others, and through the mount.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Volume } from '../src/api/volume.js';
import { mountCluster, unmountCluster } from './helpers/mount.js';
import { startCluster } from './helpers/cluster.js';

const fuse = fs.existsSync('/dev/fuse') ? false : 'no /dev/fuse on this machine';

async function workload(stats: ((p: string) => Promise<unknown>)[], addBrick: () => Promise<void>): Promise<{ ops: number; errors: Record<string, number> }> {
  let stop = false;
  let ops = 0;
  const errors: Record<string, number> = {};
  const loop = async (stat: (p: string) => Promise<unknown>, k: number) => {
    for (let n = k; !stop; n++) {
      const p = `/d${n % 4}/e/f${n % 30}`;
      try {
        await stat(p);
      } catch (e) {
        const key = `${(e as { code?: string }).code}: ${p.slice(0, 3)}`;
        errors[key] = (errors[key] ?? 0) + 1;
      }
      ops++;
      await new Promise((r) => setImmediate(r));
    }
  };
  const loops = stats.map(loop);
  await new Promise((r) => setTimeout(r, 300));
  await addBrick();
  await new Promise((r) => setTimeout(r, 3000));
  stop = true;
  await Promise.all(loops);
  return { ops, errors };
}

test('adding a brick: no lookup of an existing file fails, by the clients that made the tree or others', async () => {
  const c = await startCluster(3);
  try {
    await c.pushTopology();
    const maker = await Volume.connect(c.spec);
    const other = await Volume.connect(c.spec);
    try {
      for (let d = 0; d < 4; d++) {
        await maker.mkdir(`/d${d}/e`, { recursive: true });
        for (let i = 0; i < 30; i++) await maker.writeFile(`/d${d}/e/f${i}`, 'x');
      }
      const r = await workload([(p) => maker.stat(p), (p) => other.stat(p), (p) => other.readFile(p)], async () => {
        await c.addBrick();
        await c.pushTopology();
      });
      assert.deepEqual(r.errors, {}, `${r.ops} lookups`);
      assert.ok(r.ops > 300);
    } finally {
      await other.close();
      await maker.close();
    }
  } finally {
    await c.stop();
  }
});

test('adding a brick under a mount: no stat of an existing file fails', { skip: fuse }, async () => {
  const { c, mnt, daemon } = await mountCluster('ab');
  try {
    await c.pushTopology();
    const maker = await Volume.connect(c.spec);
    try {
      for (let d = 0; d < 4; d++) {
        await maker.mkdir(`/d${d}/e`, { recursive: true });
        for (let i = 0; i < 30; i++) await maker.writeFile(`/d${d}/e/f${i}`, 'x');
      }
      const r = await workload([async (p) => fs.statSync(path.join(mnt, p))], async () => {
        await c.addBrick();
        await c.pushTopology();
      });
      assert.deepEqual(r.errors, {}, `${r.ops} stats`);
    } finally {
      await maker.close();
    }
  } finally {
    await unmountCluster(c, mnt, daemon);
  }
});
