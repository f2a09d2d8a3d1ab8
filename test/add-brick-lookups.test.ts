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
import { RpcClient } from '../src/wire/rpc.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import { DOMAIN_ENTRY } from '../src/dht/client.js';

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

test('a directory the new brick lacks is listed whole while another client holds its namespace lock past the lock-timeout (its copy cannot be made)', async () => {
  const c = await startCluster(2);
  const admins: RpcClient[] = [];
  try {
    await c.pushTopology();
    const maker = await Volume.connect(c.spec);
    try {
      await maker.mkdir('/d');
      for (let i = 0; i < 20; i++) await maker.writeFile(`/d/f${i}`, 'x');
    } finally {
      await maker.close();
    }
    await c.addBrick();
    // The new brick in the topology, with a short lock-timeout (what volume set lock-timeout writes).
    const topology = { version: 100, bricks: c.spec.bricks.map(({ name, host, port }) => ({ name, host, port })), decommissioned: [], options: { lockTimeout: 0.3 } };
    for (const b of c.spec.bricks) {
      const r = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, adminSecret: c.spec.adminSecret });
      admins.push(r);
      await r.call('setTopology', { topology });
      // Another client holds /d's namespace lock (the entry lock of d in /, wherever it hashes) and does
      // not let go: a heal of /d onto the new brick cannot take it.
      await r.call('entrylk', { domain: DOMAIN_ENTRY, path: '/', name: 'd', type: 'wr', block: false, owner: 'hog' });
    }
    const reader = await Volume.connect({ ...c.spec, version: 100 });
    try {
      const want = Array.from({ length: 20 }, (_, i) => `f${i}`).sort();
      // Before, the brick without a copy of /d was listed too: ENOENT for the whole listing, which a
      // mount's readdir(3) takes for the end of the directory (an empty directory).
      assert.deepEqual((await reader.readdir('/d')).sort(), want);
      assert.deepEqual((await reader.readdir('/d', { whole: true })).sort(), want);
      assert.ok(!fs.existsSync(path.join(c.dirs[2], 'd')), 'the copy was not made (the lock is held)');
      // Let go, the next listing makes the copy.
      for (const r of admins) await r.call('entrylk', { domain: DOMAIN_ENTRY, path: '/', name: 'd', type: 'un', owner: 'hog' });
      assert.deepEqual((await reader.readdir('/d')).sort(), want);
      assert.ok(fs.statSync(path.join(c.dirs[2], 'd')).isDirectory(), 'the copy is made once the lock is free');
    } finally {
      await reader.close();
    }
  } finally {
    for (const r of admins) r.close();
    await c.stop();
  }
});
