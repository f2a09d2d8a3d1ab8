/**
 * The operator's events in a run: the topology change (a third brick joins, or one is drained), the
 * rebalance (the real Rebalancer, crashing at random and resuming from its checkpoint) while the
 * workload runs, the fault-free rebalances that finish it, and remove-brick commit. The namespace
 * checker (checkers/namespace.ts) runs after each of them.
 */
import { Rebalancer, type Checkpoint } from '../rebalance/rebalancer.js';
import type { Volume } from '../api/volume.js';
import type { World, Prng } from './world.js';
import type { Knobs } from './options.js';
import type { SimCluster } from './cluster.js';
import type { NameModel } from './names.js';
import { checkNamespace } from './checkers/namespace.js';

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
  private readonly store = { load: () => this.saved, save: (c: Checkpoint) => void (this.saved = structuredClone(c)) };

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
    await cluster.setTopology(1, cluster.names.map((_, i) => cluster.brickSpec(i)), this.drained ? [this.drained] : []);
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
}
