/**
 * Faults while the workload runs, drawn from the seed's knobs: a connection breaks, or a brick's process
 * exits and starts again, sometimes after a power loss of its disk (which keeps what the disk model
 * says: everything on the sync disk, a prefix of its journal, or any subset fsync(2) allows).
 * Migrator crashes are the rebalancer's (operator.ts); injected EIO and ENOSPC are the disks' own.
 */
import type { World, Prng } from './world.js';
import type { Knobs } from './options.js';
import type { SimCluster } from './cluster.js';

export interface FaultEnv {
  w: World;
  rng: Prng;
  kn: Knobs;
  cluster: SimCluster;
  log: (m: string) => void;
  /** A power loss hit a disk now. */
  powerLoss: () => void;
  /** Whether the faults go on (the workload runs). */
  going: () => boolean;
}

export async function chaos(e: FaultEnv): Promise<void> {
  const { w, rng, kn, cluster, log } = e;
  const fk = kn.faults;
  while (fk.on && e.going()) {
    await w.clock.sleep(fk.period + rng.int(fk.jitter));
    const r = rng.int(100);
    if (r < fk.breakConn) {
      log('network: a connection breaks');
      cluster.net.breakOne();
    } else if (r < fk.breakConn + fk.restart) {
      await restart(e, rng.int(cluster.nBricks), rng.chance(fk.powerLoss));
    }
  }
}

/** Brick i exits (its disk loses power too, with `power`) and starts again a little later. */
async function restart(e: FaultEnv, i: number, power: boolean): Promise<void> {
  const { w, rng, cluster, log } = e;
  const st = cluster.storages[i];
  log(`brick b${i} restarts${power ? ' after a power loss' : ''}`);
  await cluster.stop(i);
  st.brickExited();
  if (power) {
    st.crash();
    log(`b${i} lost: ${st.lastDropped.join(', ')}`);
    e.powerLoss();
  }
  await w.clock.sleep(1 + rng.int(5));
  await cluster.start(i);
}
