/**
 * The operator's events in a run: the topology change (a third brick joins, or one is drained), the
 * rebalance (the real Rebalancer, crashing at random and resuming from its checkpoint) while the
 * workload runs, the fault-free rebalances that finish it, remove-brick commit, and on some seeds
 * replace-brick (a brick's place given to a new, empty one). The namespace checker
 * (checkers/namespace.ts) runs after each of them.
 */
import { Rebalancer, type Checkpoint } from '../rebalance/rebalancer.js';
import { copyDirectories } from '../rebalance/replace-brick.js';
import { gfidFromBytes } from '../common/gfid.js';
import type { SimStorage } from './storage.js';
import type { Volume } from '../api/volume.js';
import type { World, Prng } from './world.js';
import type { Knobs } from './options.js';
import type { SimCluster } from './cluster.js';
import type { NameModel } from './names.js';
import { checkNamespace } from './checkers/namespace.js';
import { GFID, LINKTO } from './checkers/disk.js';

export interface OperatorEnv {
  w: World;
  rng: Prng;
  kn: Knobs;
  cluster: SimCluster;
  log: (m: string) => void;
  violations: string[];
  /** The names workload's model (its tree under /t; none when the workload is off). */
  tree: NameModel;
}

/** How many rebalance runs the operator starts while the workload runs (the first four may crash). */
const RUNS = 6;
const CRASHING_RUNS = 4;

export class Operator {
  /** The brick drained by remove-brick (null: add-brick). */
  readonly drained: string | null;
  rebalanceDone = false;
  rebalanceRuns = 0;
  /** Files migrated while the workload ran (the most any one run reports), and by the closing runs. */
  migrated = 0;
  lateMigrations = 0;
  private saved: Checkpoint | null = null;
  /** The rebalancer's checkpoint store: a JSON copy, as the CLI's file and the cluster's etcd key hold it. */
  private readonly store = { load: () => this.saved, save: (c: Checkpoint) => void (this.saved = JSON.parse(JSON.stringify(c)) as Checkpoint) };

  constructor(
    private readonly e: OperatorEnv,
    drained: string | null,
  ) {
    this.drained = drained;
  }

  get removeBrick(): boolean {
    return this.drained !== null;
  }

  /** The whole namespace under /t against the namer's model, through a fresh client. */
  async checkNames(when: string): Promise<void> {
    const { cluster, tree, violations } = this.e;
    if (this.e.kn.namer.tree === 0) return;
    const v = await cluster.connect(cluster.proc('check'));
    try {
      for (const x of await checkNamespace(v, tree, when)) violations.push(x);
    } finally {
      await v.close();
    }
  }

  /** add-brick (the third brick joins) or remove-brick start (one is drained). Clients learn it from the bricks. */
  async changeTopology(): Promise<void> {
    const { cluster, log } = this.e;
    log(this.removeBrick ? `remove-brick ${this.drained}` : 'add-brick sv-client-2');
    await cluster.setTopology(
      1,
      cluster.names.map((_, i) => cluster.brickSpec(i)),
      this.drained ? [this.drained] : [],
    );
    await this.checkNames(this.removeBrick ? 'remove-brick start' : 'add-brick');
  }

  /** Rebalance runs while the workload runs: each may crash, the next resumes from the checkpoint. */
  async rebalance(settleBytes: number | undefined): Promise<void> {
    const { w, rng, kn, cluster, log } = this.e;
    for (let run = 0; run < RUNS && !this.rebalanceDone; run++) {
      const who = cluster.proc('mig');
      const willCrash = kn.faults.on && run < CRASHING_RUNS && rng.chance(kn.faults.migratorCrash);
      let vol: Volume;
      try {
        vol = await cluster.connect(who);
      } catch {
        continue;
      }
      if (willCrash) {
        w.at(2 + rng.int(kn.faults.migratorLife), () => {
          log(`migrator ${who} crashes`);
          cluster.dead.add(who);
          cluster.net.kill(who);
        });
      }
      log(`rebalance ${who} starts`);
      const opts = { store: this.store, force: this.removeBrick, throttle: 1 + rng.int(2), migrate: { leaseMs: 50, chunk: 4, settleBytes }, log: (m: string) => log(`${who}: ${m}`) };
      const r = await new Rebalancer(vol.client, opts).run().catch((e) => ({ state: 'failed', error: String(e) }) as Checkpoint);
      log(`rebalance ${who}: ${r.state}${r.error ? ` (${r.error})` : ''}, ${r.counters?.migrated ?? 0} migrated`);
      this.migrated = Math.max(this.migrated, r.counters?.migrated ?? 0);
      this.rebalanceRuns++;
      vol.client.close();
      if (r.state === 'completed' && !cluster.dead.has(who)) this.rebalanceDone = true;
      await w.clock.sleep(1 + rng.int(5));
    }
  }

  /** Whether clients should go on: the rebalance is neither done nor out of runs. */
  rebalancing(): boolean {
    return !this.rebalanceDone && this.rebalanceRuns < RUNS;
  }

  /**
   * After the workload and its faults: a last, fault-free rebalance finishes whatever the crashed ones
   * left, and a final one (which must find nothing left) runs on the client returned, for the final reads.
   */
  async finish(): Promise<Volume> {
    const { cluster, log, violations } = this.e;
    const run = async (who: string, what: string) => {
      const vol = await cluster.connect(who);
      const r = await new Rebalancer(vol.client, { store: this.store, restart: true, force: this.removeBrick, log: (m) => log(`${what}: ${m}`) }).run();
      if (r.state !== 'completed') violations.push(`L1 final rebalance ${r.state}: ${r.error}`);
      return { vol, r };
    };
    if (!this.rebalanceDone) {
      const { vol, r } = await run(cluster.proc('mig'), 'last rebalance');
      this.lateMigrations += r.counters.migrated;
      vol.client.close();
    }
    return (await run(cluster.proc('final'), 'final rebalance')).vol;
  }

  /** remove-brick commit: the drained brick leaves the topology and stops (what was left on it is gone). */
  async commitRemoveBrick(): Promise<void> {
    const { cluster, log } = this.e;
    if (!this.drained) return;
    await cluster.setTopology(
      2,
      cluster.spec.bricks.filter((b) => b.name !== this.drained),
      [],
    );
    await cluster.stop(cluster.names.indexOf(this.drained));
    log(`remove-brick ${this.drained} commit`);
    await this.checkNames('remove-brick commit');
  }

  /**
   * replace-brick OLD NEW commit force, as `dhtfs volume replace-brick` does it (src/cli/bricks.ts): OLD
   * stops, NEW (an empty disk at a new address, under OLD's name) gets every directory with OLD's ranges,
   * the topology names it, and the directories made meanwhile follow. The names whose file had its only
   * data on OLD leave the model (a distribute volume has no other copy); every other name must be intact.
   */
  async replaceBrick(): Promise<void> {
    const { rng, kn, cluster, tree, log } = this.e;
    if (!kn.replaceBrick || kn.namer.tree === 0 || tree.uncertain) return;
    const live = cluster.spec.bricks.map((b) => cluster.names.indexOf(b.name));
    const i = live[rng.int(live.length)];
    const name = cluster.names[i];
    await this.forgetLost(i);
    log(`replace-brick ${name} commit force`);
    await cluster.stop(i);
    await cluster.replace(i);
    const others = await Promise.all(live.filter((j) => j !== i).map((j) => cluster.admin(j)));
    const target = await cluster.admin(i);
    try {
      await copyDirectories(others, target);
      const bricks = cluster.spec.bricks.map((b) => (b.name === name ? cluster.brickSpec(i) : b));
      await cluster.setTopology((cluster.spec.version ?? 0) + 1, bricks, cluster.spec.decommissioned ?? [], live);
      await copyDirectories(others, target, true);
    } finally {
      for (const c of [...others, target]) c.close();
    }
    await this.checkNames(`replace-brick of ${name}`);
  }

  /** The model's names whose file has its only data on brick i: gone with it. */
  private async forgetLost(i: number): Promise<void> {
    const { cluster, tree } = this.e;
    const there = dataGfids(cluster.storages[i]);
    for (const [j, st] of cluster.storages.entries()) if (j !== i && cluster.spec.bricks.some((b) => b.name === cluster.names[j])) for (const g of dataGfids(st)) there.delete(g);
    if (there.size === 0) return;
    const v = await cluster.connect(cluster.proc('check'));
    try {
      for (const [p, ino] of [...tree.paths]) {
        if (!tree.paths.has(p) || tree.kindOf(p) === 'dir') continue;
        const st = await v.lstat(p).catch(() => null);
        if (st?.gfid && there.has(st.gfid)) for (const l of tree.linksOf(ino)) tree.remove(l);
      }
    } finally {
      await v.close();
    }
  }
}

/** The gfids of the names on a disk that hold a file's data (not a directory, not a linkto), as the disk is now. */
function dataGfids(st: SimStorage): Set<string> {
  const out = new Set<string>();
  st.peekFiles((_, mode, x) => {
    if ((mode & 0o7777) === 0o1000 && x.get(LINKTO)) return;
    const g = x.get(GFID);
    if (g?.length === 16) out.add(gfidFromBytes(g));
  });
  return out;
}
