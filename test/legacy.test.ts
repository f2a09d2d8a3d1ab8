/**
 * The legacy (GlusterFS) migration order with GlusterFS's client rules, on real brick processes: the
 * seed timeline of gluster#963. With the migrator paused after `dst-data`, app1 reads stale data after
 * app2's fsynced write; after every other step it does not. (The safe protocol never does:
 * test/migrate.test.ts.)
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Volume } from '../src/api/volume.js';
import { migrateFileLegacy } from '../src/migration/legacy.js';
import { LEGACY_STEPS } from '../src/migration/steps.js';
import { pauseAfter, startCluster, type Cluster } from './helpers/cluster.js';
import { namesOn, onDisk } from './helpers/disk.js';
import { rotateLayout } from './helpers/layout.js';

let c: Cluster;
let app1: Volume;
let files: string[];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  c = await startCluster(2, { options: { migrationProtocol: 'legacy' } });
  const names = c.spec.bricks.map((b) => b.name);
  app1 = await Volume.connect(c.spec);
  files = namesOn(c.dirs, names, '/', 0, LEGACY_STEPS.length, 'g');
  for (const f of files) await app1.writeFile(`/${f}`, Buffer.from('OLD-'.padEnd(32, '.')), { mode: 0o644 });
  rotateLayout(c.dirs, names);
});
after(async () => {
  await app1?.close();
  await c?.stop();
});

LEGACY_STEPS.forEach((pauseAt, i) => {
  const racy = pauseAt === 'dst-data';
  test(`legacy seed timeline, migrator paused after '${pauseAt}': ${racy ? 'app1 reads STALE data (gluster#963)' : 'app1 reads the new data'}`, async () => {
    const p = `/${files[i]}`;
    const h1 = await app1.open(p, 'r'); // app1's fd is on src
    const migrator = await Volume.connect(c.spec);
    const pause = pauseAfter(pauseAt);
    const mig = migrateFileLegacy(migrator.client, p, { afterStep: pause.hook });
    await pause.paused;
    const app2 = await Volume.connect(c.spec);
    const h2 = await app2.open(p, 'r+');
    await h2.write('NEW!', 0, 4, 0);
    await h2.sync();
    // notify -> app1 reads through its fd from before the migration
    const buf = Buffer.alloc(4);
    await h1.read(buf, 0, 4, 0);
    pause.resume();
    assert.equal((await mig).result, 'migrated');
    if (racy) assert.equal(buf.toString(), 'OLD-', 'the stale read happens: app1 misses the fsynced write');
    else assert.equal(buf.toString(), 'NEW!');
    await h2.close();
    await h1.close();
    // After the migration the file is on dst with app2's write.
    assert.equal((await app2.readFile(p)).toString('utf8', 0, 4), 'NEW!');
    assert.equal(onDisk(c.dirs[0], files[i]), null);
    await sleep(1);
    await app2.close();
    await migrator.close();
  });
});
