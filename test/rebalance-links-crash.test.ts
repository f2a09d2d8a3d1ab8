/**
 * A drain of a file with several names cut off after each step of its migration (the migrator's
 * connections closed while it waits there, as a crash does): every name stays readable by a fresh client
 * with the right bytes (after the commit, the client's install gives every name its place), and a new
 * run finishes the drain with nothing left behind. Real brick processes.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Volume } from '../src/api/volume.js';
import { Rebalancer, type Checkpoint } from '../src/rebalance/rebalancer.js';
import { SAFE_STEPS, type SafeStep } from '../src/migration/steps.js';
import { pauseAfter, startCluster } from './helpers/cluster.js';

const names = ['/a/h', '/a/h-b', '/b/h-c'];

for (const step of SAFE_STEPS.filter((s) => s !== 'release')) {
  test(`a drain of a file with 3 names, its migrator cut off after ${step}`, { timeout: 120_000 }, async () => {
    const c = await startCluster(2);
    try {
      const vol = await Volume.connect(c.spec);
      await vol.mkdir('/a');
      await vol.mkdir('/b');
      await vol.writeFile(names[0], 'one file, three names\n');
      await vol.link(names[0], names[1]);
      await vol.link(names[0], names[2]);
      const from = c.dirs.findIndex((d) => fs.existsSync(path.join(d, 'a/h')) && (fs.lstatSync(path.join(d, 'a/h')).mode & 0o7777) !== 0o1000);
      const bricks = c.spec.bricks.map((b) => b.name);
      await c.pushTopology([bricks[from]]);
      let cp: Checkpoint | null = null;
      const store = { load: () => cp, save: (x: Checkpoint) => void (cp = structuredClone(x)) };
      const rb = await Volume.connect(c.spec);
      const p = pauseAfter<SafeStep>(step);
      void new Rebalancer(rb.client, { store, force: true, migrate: { afterStep: p.hook } }).run().catch(() => {});
      await p.paused;
      await rb.close(); // the migrator is gone: its lease with it
      const fresh = await Volume.connect(c.spec);
      for (const n of names) assert.equal(String(await fresh.readFile(n)), 'one file, three names\n', `${n} after a cut at ${step}`);
      assert.equal((await fresh.lstat(names[2])).nlink, 3);
      await fresh.close();
      // A new run finishes the drain.
      cp = null;
      const rb2 = await Volume.connect(c.spec);
      const r = await new Rebalancer(rb2.client, { store, force: true }).run();
      assert.equal(r.state, 'completed', r.error);
      await rb2.close();
      for (const n of names) {
        const st = fs.lstatSync(path.join(c.dirs[from], n), { throwIfNoEntry: false });
        assert.ok(!st || (st.isFile() && (st.mode & 0o7777) === 0o1000), `${n} is gone from the drained brick`);
      }
      const after = await Volume.connect(c.spec);
      await after.writeFile(names[1], 'written after\n');
      for (const n of names) assert.equal(String(await after.readFile(n)), 'written after\n', n);
      assert.equal((await after.lstat(names[0])).nlink, 3);
      await after.close();
      await vol.close();
    } finally {
      await c.stop();
    }
  });
}
