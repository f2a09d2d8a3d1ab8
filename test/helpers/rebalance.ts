/** A whole rebalance onto a brick added to a test cluster, as `add-brick` then `rebalance start` do it. */
import assert from 'node:assert/strict';
import { Volume } from '../../src/api/volume.js';
import { Rebalancer, type Checkpoint } from '../../src/rebalance/rebalancer.js';
import type { Cluster } from './cluster.js';

/** Adds a brick, tells every brick, and rebalances onto it (checkpoints in memory): it must complete, fail nothing and move some files. */
export async function rebalanceOntoNewBrick(c: Cluster): Promise<void> {
  await c.addBrick();
  await c.pushTopology();
  const rb = await Volume.connect(c.spec);
  try {
    let cp: Checkpoint | null = null;
    const store = { load: () => cp, save: (x: Checkpoint) => void (cp = structuredClone(x)) };
    const r = await new Rebalancer(rb.client, { store }).run();
    assert.equal(r.state, 'completed', r.error);
    assert.equal(r.counters.failed, 0);
    assert.ok(r.counters.migrated > 0, 'files moved to the new brick');
  } finally {
    await rb.close();
  }
}
