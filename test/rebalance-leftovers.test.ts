/**
 * What interrupted or concurrent operations leave on the bricks, and what migration makes of it (real
 * brick processes): the data of a file a rename replaced, which the renamer could not remove; a directory
 * renamed while a file in it migrates.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Volume } from '../src/api/volume.js';
import { Rebalancer, type Checkpoint, type CheckpointStore } from '../src/rebalance/rebalancer.js';
import { pauseAfter, startCluster, type Cluster } from './helpers/cluster.js';
import { migrateFile } from '../src/migration/migrator.js';
import type { SafeStep } from '../src/migration/steps.js';
import { rotateLayout } from './helpers/layout.js';
import { scanBrick } from './helpers/disk.js';
import { O_WRONLY } from '../src/storage/storage.js';

/** The bricks holding a data file (not a linkto) at the brick path `rel`. */
function dataFilesOf(c: Cluster, rel: string): string[] {
  return c.dirs.flatMap((d, i) => [...scanBrick(d)].filter(([p, o]) => p === rel && (o.mode & 0o170000) === 0o100000 && o.linkto === null).map(() => c.spec.bricks[i].name));
}

function memStore(): CheckpointStore {
  let saved: Checkpoint | null = null;
  return {
    load: () => (saved ? structuredClone(saved) : null),
    save: (c) => void (saved = structuredClone(c)),
  };
}

// A rename of a file over /x whose old data sits on a brick that was away for longer than the rename
// waits for it leaves that data there: unreachable (the name leads to the new file), one name with two
// files. The simulator found a drain then moving it beside the new file (seed 1010): the rebalancer now
// removes it, as the rename meant to.
test('the data of a file a rename replaced, left on a drained brick, is removed, not moved beside the new one', { timeout: 120_000 }, async () => {
  const c = await startCluster(3);
  try {
    const vol = await Volume.connect(c.spec);
    await vol.mkdir('/d');
    await vol.writeFile('/d/x', 'the new file');
    const names = c.spec.bricks.map((b) => b.name);
    const hashed = await vol.client.hashedOf('/d/x');
    const left = names.find((n) => n !== hashed)!;
    // The replaced file's data, as the rename left it: a data file of another gfid at the name.
    await vol.client.sv(left).call('create', { path: '/d/x', flags: O_WRONLY, mode: 0o644, gfid: randomUUID(), data: Buffer.from('the replaced file'), close: true });
    await c.pushTopology([left]);
    const rb = await Volume.connect(c.spec);
    const r = await new Rebalancer(rb.client, { store: memStore(), force: true }).run();
    assert.equal(r.state, 'completed', r.error);
    assert.deepEqual(dataFilesOf(c, 'd/x'), [hashed], 'one data file of /d/x, on its hashed brick');
    const fresh = await Volume.connect(c.spec);
    assert.equal((await fresh.readFile('/d/x')).toString(), 'the new file');
    await Promise.all([vol.close(), rb.close(), fresh.close()]);
  } finally {
    await c.stop();
  }
});

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
    const run = migrateFile(mig.client, '/d/f', { afterStep: pause.hook })
      .then(
        (r) => r.result,
        (e: Error) => e.message,
      )
      .finally(() => (ended = true));
    await Promise.race([pause.paused, run]);
    if (ended) assert.fail(`the migration did not begin: ${await run}`);
    await vol.rename('/d', '/e');
    pause.resume();
    const outcome = await run;
    assert.notEqual(outcome, 'migrated');
    const fresh = await Volume.connect(c.spec);
    assert.equal((await fresh.readFile('/e/f')).toString(), 'data of f');
    assert.deepEqual(dataFilesOf(c, 'e/f'), [from], `one data file of /e/f, where it was (${outcome})`);
    await Promise.all([vol.close(), mig.close(), fresh.close()]);
  } finally {
    await c.stop();
  }
});
