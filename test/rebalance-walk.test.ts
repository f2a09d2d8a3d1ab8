/**
 * A rebalance's walk meets a volume that changes under it: directories removed (with everything in
 * them) while the rebalancer walks the tree are skipped and logged, not fatal to the run (issue 20,
 * item 10). Real brick processes.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Volume } from '../src/api/volume.js';
import { Rebalancer, type Checkpoint } from '../src/rebalance/rebalancer.js';
import { startCluster } from './helpers/cluster.js';

const content = (p: string) => Buffer.from(`${p}\n`.repeat(50));

test('directories removed during the walk are skipped and logged; the run completes', { timeout: 120_000 }, async () => {
  const c = await startCluster(3);
  try {
    const vol = await Volume.connect(c.spec);
    const dirs: string[] = [];
    for (let i = 0; i < 24; i++) {
      const d = `/d${String(i).padStart(2, '0')}`;
      dirs.push(d);
      await vol.mkdir(`${d}/sub`, { recursive: true });
      for (let j = 0; j < 6; j++) await vol.writeFile(`${d}/f${j}`, content(`${d}/f${j}`));
      await vol.writeFile(`${d}/sub/g`, content(`${d}/sub/g`));
    }
    await c.addBrick();
    await c.pushTopology();
    const rb = await Volume.connect(c.spec);
    let cp: Checkpoint | null = null;
    const logs: string[] = [];
    // The workload: once the walk is in /d01, another client removes every directory from /d04 on,
    // each with all it holds, while the walk goes on (the walker listed / before, so it meets them).
    let removal: Promise<void> | null = null;
    const removed: string[] = [];
    const workloadErrors: string[] = [];
    const remove = async () => {
      const w = await Volume.connect(c.spec);
      try {
        for (const d of dirs.slice(4)) {
          await w.rm(d, { recursive: true });
          removed.push(d);
        }
      } finally {
        await w.close();
      }
    };
    const store = {
      load: () => cp,
      save: (x: Checkpoint) => {
        cp = structuredClone(x);
        if (!removal && x.position?.startsWith('/d01')) removal = remove().catch((e) => void workloadErrors.push(String(e)));
      },
    };
    const r = await new Rebalancer(rb.client, { store, throttle: 1, log: (m) => logs.push(m) }).run();
    await removal;
    assert.equal(r.state, 'completed', `the run completed (${r.error})`);
    assert.deepEqual(workloadErrors, [], 'the workload met no error');
    assert.equal(removed.length, dirs.length - 4, 'the workload removed its directories');
    assert.ok(
      logs.some((l) => /skipped directory \/d\d\d.*removed/.test(l)),
      `a removed directory was skipped with a log line:\n${logs.join('\n')}`,
    );
    // A fresh client sees exactly the directories that were kept, with all their files.
    const fresh = await Volume.connect(c.spec);
    assert.deepEqual(
      (await fresh.readdir('/')).sort(),
      dirs.slice(0, 4).map((d) => d.slice(1)),
    );
    for (const d of dirs.slice(0, 4)) {
      for (let j = 0; j < 6; j++) assert.ok((await fresh.readFile(`${d}/f${j}`)).equals(content(`${d}/f${j}`)));
      assert.ok((await fresh.readFile(`${d}/sub/g`)).equals(content(`${d}/sub/g`)));
    }
    for (const d of dirs.slice(4)) await assert.rejects(fresh.stat(d), { code: 'ENOENT' });
    // A second run over the changed tree completes too.
    cp = null;
    const again = await new Rebalancer(rb.client, { store }).run();
    assert.equal(again.state, 'completed', again.error);
    await fresh.close();
    await vol.close();
    await rb.close();
  } finally {
    await c.stop();
  }
});
