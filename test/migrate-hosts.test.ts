/**
 * Migration between hosts (issue 19 item 6): when src and dst are bricks of different hosts, dst reads the
 * file from src over the brick path (migFetch -> src's migRead, brick/peers.ts), so that its bytes do not
 * cross the migrator's process; where dst cannot reach src, the migrator relays them as before. The two
 * bricks here are processes of this machine that take themselves for two hosts (DHTFS_HOST_ID), so that
 * the same-host pull (dst reading src's disk) is not taken.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Volume } from '../src/api/volume.js';
import { migrateFile } from '../src/migration/migrator.js';
import type { DhtClient } from '../src/dht/client.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { namesOn, onDisk } from './helpers/disk.js';
import { rotateLayout } from './helpers/layout.js';

let c: Cluster;
let files: string[];
const data = new Map<string, Buffer>();

before(async () => {
  c = await startCluster(2, { hostId: (i) => `migrate-hosts-test-host-${i}` });
  const names = c.spec.bricks.map((b) => b.name);
  const v = await Volume.connect(c.spec);
  files = namesOn(c.dirs, names, '/', 0, 2, 'x');
  for (const f of files) {
    const d = randomBytes(5 * 1024 * 1024 + 3);
    data.set(f, d);
    await v.writeFile(`/${f}`, d);
  }
  await v.close();
  rotateLayout(c.dirs, names); // both files now hash to brick 1 but live on brick 0
});
after(async () => {
  await c?.stop();
});

/** Counts the file operations a client sends, by name. */
function countOps(client: DhtClient): Map<string, number> {
  const counts = new Map<string, number>();
  const fdCall = client.fdCall.bind(client);
  client.fdCall = ((f, op, args, into) => {
    counts.set(op, (counts.get(op) ?? 0) + 1);
    return fdCall(f, op, args, into);
  }) as DhtClient['fdCall'];
  return counts;
}

test('where dst does not know src (no topology stored on it), the migrator relays the bytes', async () => {
  // No topology was stored on the bricks yet (the volume's CLI writes one; this helper does not).
  const v = await Volume.connect(c.spec);
  const ops = countOps(v.client);
  const f = files[1];
  const r = await migrateFile(v.client, `/${f}`, { chunk: 1024 * 1024 });
  assert.equal(r.result, 'migrated');
  const asked = ops.get('migFetch') ?? 0;
  assert.ok(asked >= 1 && asked <= 4, `dst was asked at most once per copy worker, and could not (${asked})`);
  assert.ok((ops.get('read') ?? 0) >= 6, 'the migrator relayed the ranges');
  const fresh = await Volume.connect(c.spec);
  assert.ok((await fresh.readFile(`/${f}`)).equals(data.get(f)!), 'its bytes');
  await fresh.close();
  await v.close();
});

test('between hosts, dst reads the file from src over the brick path: no byte through the migrator', async () => {
  await c.pushTopology(); // dst reaches only bricks of the topology stored on it
  const v = await Volume.connect(c.spec);
  const ops = countOps(v.client);
  const f = files[0];
  const r = await migrateFile(v.client, `/${f}`, { chunk: 1024 * 1024 });
  assert.equal(r.result, 'migrated');
  assert.ok((ops.get('migFetch') ?? 0) >= 6, `dst fetched the ranges itself (${JSON.stringify([...ops])})`);
  assert.equal(ops.get('read') ?? 0, 0, 'the migrator read nothing from src');
  assert.ok((ops.get('migPull') ?? 0) <= 4, 'a same-host pull tried at most once per copy worker (EXDEV between hosts)');
  assert.ok(onDisk(c.dirs[1], f), 'the file is on brick 1');
  assert.equal(onDisk(c.dirs[0], f), null, 'and no longer on brick 0');
  const fresh = await Volume.connect(c.spec);
  assert.ok((await fresh.readFile(`/${f}`)).equals(data.get(f)!), 'its bytes');
  await fresh.close();
  await v.close();
});
