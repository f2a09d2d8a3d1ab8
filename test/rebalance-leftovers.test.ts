/**
 * What interrupted or concurrent operations leave on the bricks, and what migration makes of it (real
 * brick processes): a directory renamed while a file in it migrates.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Volume } from '../src/api/volume.js';
import { pauseAfter, startCluster } from './helpers/cluster.js';
import { migrateFile } from '../src/migration/migrator.js';
import type { SafeStep } from '../src/migration/steps.js';
import { rotateLayout } from './helpers/layout.js';
import { scanBrick } from './helpers/disk.js';

// The rename of a directory reaches no tracking of the files in it: a file migrating meanwhile committed,
// its copy could not be installed at the name the lease had found (its directory was gone), and src's
// copy, under its new path, was left with a commit record whose copy no one could install. The simulator
// lost such files in drains (names workload, seeds 35 and 47). src now refuses the commit.
test('a directory renamed while a file in it migrates: the commit is refused, the file stays whole', { timeout: 120_000 }, async () => {
  const c = await startCluster(3);
  try {
    const vol = await Volume.connect(c.spec);
    await vol.mkdir('/d');
    await vol.writeFile('/d/f', 'data of f');
    const names = c.spec.bricks.map((b) => b.name);
    const from = (await vol.client.locate('/d/f')).cached;
    rotateLayout(c.dirs, names, '/d'); // /d/f hashes to another brick now
    const mig = await Volume.connect(c.spec);
    const pause = pauseAfter<SafeStep>('final-copy');
    let ended = false;
    const run = migrateFile(mig.client, '/d/f', { afterStep: pause.hook }).then(
      (r) => r.result,
      (e: Error) => e.message,
    ).finally(() => (ended = true));
    await Promise.race([pause.paused, run]);
    if (ended) assert.fail(`the migration did not begin: ${await run}`);
    await vol.rename('/d', '/e');
    pause.resume();
    const outcome = await run;
    assert.notEqual(outcome, 'migrated');
    const fresh = await Volume.connect(c.spec);
    assert.equal((await fresh.readFile('/e/f')).toString(), 'data of f');
    const copies = c.dirs.flatMap((d, i) => [...scanBrick(d)].filter(([p, o]) => p === 'e/f' && (o.mode & 0o170000) === 0o100000 && o.linkto === null).map(() => names[i]));
    assert.deepEqual(copies, [from], `one data file of /e/f, where it was (${outcome})`);
    await Promise.all([vol.close(), mig.close(), fresh.close()]);
  } finally {
    await c.stop();
  }
});
