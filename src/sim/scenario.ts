/**
 * One simulated run of the real code from one seed: bricks (real Brick on SimStorage), clients (real
 * Volume/DhtClient), a rebalancer (real Rebalancer, safe or legacy protocol) over SimNetwork. The parts:
 * the volume (cluster.ts), the clients' workload (workload.ts) and the names workload (names.ts), faults
 * (faults.ts), the operator's events (operator.ts), and the checkers (checkers/, one per property), each
 * run as soon as what it checks is known: S3 and its converse (presence) after every event that changed
 * a disk, S1 as each read completes, S4 as each operation or listing completes (the own names' once the
 * owner's overlapping operation ended), the namespace after each operator event, S2 and S5 at the end.
 */
import { ignoreCodes } from '../common/errors.js';
import { planted } from '../common/plant.js';
import { Volume } from '../api/volume.js';
import { DhtClient } from '../dht/client.js';
import { World, type Prng } from './world.js';
import { SimNetwork } from './net.js';
import type { SimStorage } from './storage.js';
import { simLocalFiles, type LocalCounts } from './local.js';
import { classicKnobs, drawKnobs, type Knobs } from './options.js';
import { NameModel, namer, seedTree, type NamerEnv } from './names.js';
import { SimCluster } from './cluster.js';
import { Operator } from './operator.js';
import { chaos } from './faults.js';
import { REGION, Workload, token8, type App } from './workload.js';
import { S3Checker } from './checkers/s3.js';
import { PresenceChecker } from './checkers/presence.js';
import { HistoryChecker } from './checkers/history.js';
import { OwnNames, key, type NsState } from './checkers/own-names.js';
import { checkFinalListing } from './checkers/listing.js';
import { checkBricks } from './checkers/bricks.js';

export interface SimOptions {
  seed: number;
  protocol?: 'safe' | 'legacy';
  plant?: string[];
  files?: number;
  regions?: number;
  clients?: number;
  opsPerClient?: number;
  faults?: boolean;
  /** add-brick or remove-brick (default: one or the other, by the seed). */
  topology?: 'add-brick' | 'remove-brick';
  /** Debugging: record the bricks' view of the files in the trace every `probe` virtual ms. */
  probe?: number;
  /** The run's knobs: drawn from the seed (swarm) by default; `classic`: the simulator's fixed ones. */
  knobs?: Knobs;
  classic?: boolean;
  /** The names workload (names.ts) with the knobs drawn for it (off by default). */
  names?: boolean;
  /** Injected EIO and ENOSPC with the chances drawn for them (off by default). */
  errors?: boolean;
  /** Errors capture their stacks (a replay); without, a run is faster. */
  stacks?: boolean;
  /** Changes to the knobs drawn (a disk model pinned, ...). */
  pin?: (k: Knobs) => void;
}

export interface SimResult {
  seed: number;
  /** Files migrated while the workload ran (the most any one run reports), and by the closing runs. */
  migrated: number;
  lateMigrations: number;
  /** Reads and writes the clients made on the bricks' files themselves (local reads and writes), and the checks that found a commit record. */
  local: LocalCounts;
  violations: string[];
  ops: number;
  events: number;
  virtualMs: number;
  trace: string[];
  /** The bricks' disks, for inspection (debugging a seed). */
  storages?: SimStorage[];
  knobs: Knobs;
  /** Operations of the names workload. */
  names?: number;
}

export async function runSeed(o: SimOptions): Promise<SimResult> {
  const run = new SeedRun(o);
  await run.startBricks();
  run.driver().then(
    () => (run.finished = true),
    (e) => {
      run.driverError = e;
      run.finished = true;
    },
  );
  if (o.probe) run.probe(o.probe);
  await run.runWorld(!!o.stacks);
  return run.result();
}

/** The knobs of a run: drawn from the seed (swarm), or the classic ones, with the options' changes. */
function knobsOf(o: SimOptions): Knobs {
  const kn = o.knobs ?? (o.classic ? classicKnobs(o.seed, o.faults ?? true) : drawKnobs(o.seed, o.faults ?? true));
  if (o.files !== undefined) kn.files = o.files;
  if (o.regions !== undefined) kn.regions = o.regions;
  if (o.clients !== undefined) kn.clients = o.clients;
  if (o.opsPerClient !== undefined) kn.opsPerClient = o.opsPerClient;
  if (o.topology !== undefined) kn.topology = o.topology;
  // The names workload is not on by default yet: with faults it finds what docs/MIGRATION.md lists as open.
  if (!o.names) kn.namer = { ...kn.namer, tree: 0, ops: 0 };
  // Nor are injected EIO and ENOSPC: they find renames cut off by an error that leave a name missing
  // or a rename's mark behind (docs/MIGRATION.md, "Open").
  if (!o.errors) kn.disk = { ...kn.disk, eio: 0, enospc: 0 };
  o.pin?.(kn);
  return kn;
}

const N_BRICKS = 3;

/** One seed's run: its parts, and the driver that plays the scenario inside the world. */
class SeedRun {
  readonly w: World;
  readonly rng: Prng;
  readonly kn: Knobs;
  readonly trace: string[] = [];
  readonly violations: string[] = [];
  readonly fileNames: string[];
  readonly cluster: SimCluster;
  readonly operator: Operator;
  readonly history: HistoryChecker;
  readonly own: OwnNames;
  readonly workload: Workload;
  /** The names workload's tree under /t. */
  readonly tree = new NameModel();
  readonly local: LocalCounts = { reads: 0, writes: 0, recorded: 0 };
  readonly powerLosses: number[] = [];
  /** Every fixed file somewhere, from the end of the setup until the end of the checks. */
  readonly presence: PresenceChecker;
  namerOps = 0;
  finished = false;
  driverError: unknown = null;

  constructor(private readonly o: SimOptions) {
    const w = (this.w = new World(o.seed));
    this.rng = w.rng;
    const net = new SimNetwork(w);
    const kn = (this.kn = knobsOf(o));
    // Names drawn from the seed, so that which files must move differs from seed to seed.
    this.fileNames = Array.from({ length: kn.files }, (_, j) => `f${j}-${w.rng.int(1_000_000)}`);
    // Each client's own names, which it creates, truncates, renames and unlinks while the others read them.
    const ownNames = Array.from({ length: kn.clients }, (_, k) => Array.from({ length: 3 }, (_, j) => `n${k}${j}-${w.rng.int(1_000_000)}`));
    planted.clear();
    for (const p of o.plant ?? []) planted.add(p);
    // add-brick: two bricks, a third joins; remove-brick: three bricks, one is drained.
    const removeBrick = kn.topology === 'remove-brick';
    const drained = removeBrick ? `sv-client-${this.rng.int(N_BRICKS)}` : null;
    this.cluster = new SimCluster(w, net, kn, o.protocol ?? 'safe', N_BRICKS, removeBrick ? 3 : 2);
    const log = this.log;
    this.operator = new Operator({ w, rng: this.rng, kn, cluster: this.cluster, log, violations: this.violations, tree: this.tree }, drained);
    this.history = new HistoryChecker(this.violations);
    this.presence = new PresenceChecker(
      this.cluster.storages,
      this.fileNames.map((n) => `d/${n}`),
      this.cluster.names,
    );
    this.own = new OwnNames(ownNames, this.violations);
    const lossy = (t: number) => this.lossy(t);
    const rebalancing = () => this.operator.rebalancing();
    this.workload = new Workload({ w, rng: this.rng, kn, log, violations: this.violations, history: this.history, own: this.own, fileNames: this.fileNames, lossy, rebalancing, stacks: !!o.stacks });
  }

  readonly log = (m: string): void => {
    this.trace.push(`${this.w.now.toFixed(2).padStart(9)} ${m}`);
  };

  async startBricks(): Promise<void> {
    for (let i = 0; i < N_BRICKS; i++) await this.cluster.start(i);
  }

  /**
   * Whether the clients' own names may have lost changes by `t`: a power loss on a disk that holds
   * names only once their directory is fsynced (the clients never fsync one, as most programs; a
   * brick does not either, as GlusterFS's does not). Their reads and final state are then not checked
   * against the model; the fixed files, made durable, still are.
   */
  lossy(t: number): boolean {
    return this.kn.disk.durability !== 'sync' && this.powerLosses.some((p) => p <= t);
  }

  /** Runs the world until the driver is done, with the always-on checkers after every event. */
  async runWorld(stacks: boolean): Promise<void> {
    // S3 after every event that changed a disk (the legacy protocol breaks it by design: two data
    // copies); the own names' reads and listings whose overlapping operations have ended.
    const s3 = new S3Checker(this.cluster.storages, this.cluster.names);
    const presence = this.presence;
    this.w.afterEvent = () => {
      s3.check(this.w.now);
      presence.check(this.w.now);
      this.own.flush();
    };
    // Errors are many and expected (ENOENT, EMOVED, injected EIO); their stacks cost more than the rest
    // of their handling. A replay (`--seed`) keeps them, for a driver error's stack.
    const stackLimit = Error.stackTraceLimit;
    if (!stacks) Error.stackTraceLimit = 0;
    try {
      await this.w.run(() => this.finished, 600_000);
    } finally {
      Error.stackTraceLimit = stackLimit;
    }
    for (const v of s3.found.values()) this.violations.push(v);
    for (const v of presence.found.values()) this.violations.push(v);
    if (this.driverError) this.violations.push(`driver: ${(this.driverError as Error)?.stack ?? this.driverError}`);
    if (!this.finished) this.violations.push('L1: the run did not finish (deadlock)');
    planted.clear();
  }

  result(): SimResult {
    const { w, o, operator: op } = this;
    return {
      seed: o.seed,
      migrated: op.migrated,
      lateMigrations: op.lateMigrations,
      local: this.local,
      violations: this.violations,
      ops: this.history.ops.length,
      events: w.events,
      virtualMs: w.now,
      trace: this.trace,
      storages: this.cluster.storages,
      knobs: this.kn,
      names: this.namerOps,
    };
  }

  /** The scenario, inside the world: set up, change the topology, load and faults while it rebalances, then check. */
  async driver(): Promise<void> {
    const namerEnv = await this.setUp();
    this.presence.on = true;
    const before = this.cluster.spec.bricks;
    await this.operator.changeTopology();
    // (Awaited here, not in a method of its own: the schedule of the seeds kept in test/sim.test.ts
    // depends on the microtasks between the last fd opened and the workload's first draws.)
    this.workload.apps = await Promise.all(this.connectApps(before));
    await this.underLoad(namerEnv);
    const vol = await this.operator.finish();
    await this.finalChecks(vol);
    await this.operator.checkNames(this.operator.removeBrick ? 'the drain' : 'the rebalance');
    await this.operator.commitRemoveBrick();
    this.checkBricks();
    this.presence.on = false;
    await this.operator.replaceBrick();
  }

  /** The fixed files on the first bricks, and the names workload's starting tree. */
  private async setUp(): Promise<NamerEnv> {
    const { kn, cluster } = this;
    const admin = await cluster.connect('setup');
    await admin.mkdir('/d');
    for (let f = 0; f < kn.files; f++) {
      const h = await admin.open(this.workload.fp(f), 'w');
      await h.write(Buffer.concat(Array.from({ length: kn.regions }, () => token8(0))), 0, kn.regions * REGION, 0);
      await h.sync();
      await h.close();
    }
    // The names workload's starting tree: every kind of name, hard links among them.
    const namerEnv: NamerEnv = {
      rng: this.rng,
      log: this.log,
      violation: (m) => this.violations.push(m),
      sync: () => cluster.storages.forEach((st) => st.syncNow()),
      sleep: (ms) => this.w.clock.sleep(ms),
      lossyLosses: () => (kn.disk.durability === 'sync' ? 0 : this.powerLosses.length),
    };
    if (kn.namer.tree > 0) {
      await admin.mkdir('/t');
      await seedTree(admin, this.tree, namerEnv, kn.namer.tree);
    }
    await admin.close();
    for (const st of cluster.storages) st.syncNow(); // the operator's sync(1)
    return namerEnv;
  }

  /** The applications, connected before the topology change (`bricks`), each with an fd on every fixed file. */
  private connectApps(bricks: SimCluster['spec']['bricks']): Promise<App>[] {
    const { w, rng, kn, cluster } = this;
    const clientSpec = { ...cluster.spec, bricks, version: 0, decommissioned: [] };
    const host = cluster.host;
    return Array.from({ length: kn.clients }, async (_, k) => {
      // With the bricks on one host, the clients are on it too: they read some of their files' bytes
      // from the bricks' files themselves (local reads).
      const files = host ? simLocalFiles(host.name, host.storages, () => rng.chance(kn.local), this.local) : null;
      const v = new Volume(new DhtClient(clientSpec, cluster.net.as(`app${k}`), w.clock, w.random, { clientName: `app${k}` }), files);
      await v.client.connect();
      const fds = [];
      for (let f = 0; f < kn.files; f++) fds.push(await v.open(this.workload.fp(f), 'r+'));
      return { v, fds };
    });
  }

  /** The workload and the names workload, with faults and the rebalance running under them. */
  private async underLoad(namerEnv: NamerEnv): Promise<void> {
    const { w, kn, cluster } = this;
    let workloadDone = false;
    for (const st of cluster.storages) st.faulty = kn.faults.on;
    // The simulated files are small, and a small file goes from its copy straight to the freeze: on some
    // seeds every file makes the recopy rounds of a large one instead.
    const rb = this.operator.rebalance(kn.recopyRounds ? 0 : undefined);
    const powerLoss = () => {
      if (kn.disk.durability !== 'sync') for (const m of this.own.models) m.lossy = true;
      this.powerLosses.push(w.now);
      this.history.powerLoss(w.now);
    };
    const ch = chaos({ w, rng: this.rng, kn, cluster, log: this.log, powerLoss, going: () => !workloadDone });
    const naming = async () => {
      if (kn.namer.ops === 0) return;
      let v: Volume | null = null;
      for (let i = 0; !v; i++) {
        v = await cluster.connect('namer').catch((e: unknown) => {
          if (i >= 50) throw e;
          return null;
        });
        if (!v) await w.clock.sleep(10);
      }
      await namer(v, this.tree, namerEnv, kn.namer.ops, kn.namer.pause, kn.namer.tree, kn.namer.settle);
      await v.close();
    };
    await Promise.all([this.workload.run(), naming()]);
    this.namerOps = this.tree.ops;
    workloadDone = true;
    await ch;
    await rb;
    for (const st of cluster.storages) st.faulty = false;
  }

  /** S2: a final read of every region, the own names' final contents and the final listing, through `vol`. */
  private async finalChecks(vol: Volume): Promise<void> {
    const { kn, history, own, violations } = this;
    const R = kn.regions;
    const vcs = this.workload.vcs;
    const finalVc = vcs.reduce((a, b) => a.map((x, j) => Math.max(x, b[j])));
    for (let f = 0; f < kn.files; f++) {
      const data = await vol.readFile(this.workload.fp(f));
      for (let region = 0; region <= R; region++) {
        const t = region === R ? data.length - R * REGION : Number(data.toString('utf8', region * REGION, region * REGION + REGION));
        const op = { id: history.ops.length, client: -1, kind: 'read' as const, file: f, region, token: t, issue: finalVc, ack: finalVc, t0: this.w.now, t1: this.w.now, failed: false };
        history.issued(op);
        history.completed(op);
      }
    }
    own.finish();
    // The namespace: every client's names together must match one state its model allows.
    const present: string[] = [];
    for (const m of own.models) {
      const seen: NsState = {};
      for (const n of m.names) {
        try {
          const t = this.workload.parseToken(await vol.readFile(`/d/${n}`), `final read of /d/${n}`);
          if (t !== null) seen[n] = t;
          present.push(n);
        } catch (e) {
          ignoreCodes(e, 'ENOENT');
        }
      }
      if (!this.lossy(this.w.now) && !m.current.some((s) => key(s) === key(seen))) violations.push(`S2 app${m.owner}'s names end as ${key(seen)}, but its operations allow only ${m.current.map(key).join(' | ')}`);
    }
    this.want = [...this.fileNames, ...present].sort();
    checkFinalListing(await vol.readdir('/d', { whole: true }), this.want, violations);
    await vol.close();
    for (const a of this.workload.apps) await a.v.close().catch(() => {});
  }

  /** The names /d must hold at the end. */
  private want: string[] = [];

  /** S5 over every brick once all is over. */
  private checkBricks(): void {
    const { cluster, tree } = this;
    // The clients' own names after a power loss that may have taken back part of a rename or a create
    // (nobody fsynced their directory): what the bricks hold of them is not checked for S5.
    // A name of /t with several (hard links) keeps its data where it is in a rebalance, each other name a
    // linkto on its hashed brick (GlusterFS's rule): those linkto files are meant to stay.
    const multi = new Set([...tree.paths].filter(([, ino]) => tree.linksOf(ino).length > 1).map(([p]) => p.slice(1)));
    const lenient = this.lossy(this.w.now) ? new Set(this.own.all.map((n) => `d/${n}`)) : new Set<string>();
    checkBricks(cluster.storages, cluster.names, this.want, this.violations, this.operator.drained, lenient, tree.uncertain ? null : multi);
  }

  /** Debugging: the bricks' view of /d in the trace every `every` virtual ms, when it changed. */
  probe(every: number): void {
    const w = this.w;
    let last = '';
    const probe = () => {
      const view = this.cluster.storages
        .map((st, i) => {
          const files = (() => {
            try {
              return st.readdir('d').map((e) => {
                const p = `d/${e.name}`;
                const s2 = st.lstat(p);
                const mv = st.getxattr(p, 'trusted.dhtfs.migration') ? '@moved' : '';
                const lt = st.getxattr(p, 'trusted.glusterfs.dht.linkto') && (s2.mode & 0o7777) === 0o1000 ? '>linkto' : '';
                return `${e.name.slice(0, 3)}${lt}${mv}`;
              });
            } catch {
              return [];
            }
          })();
          const tmp = (() => {
            try {
              return st.readdir('.glusterfs/dhtfs-migrate').length;
            } catch {
              return 0;
            }
          })();
          return `b${i}[${files.join(' ')}${tmp ? ` tmp:${tmp}` : ''}]`;
        })
        .join(' ');
      if (view !== last) this.log(`probe ${view}`);
      last = view;
      if (!this.finished) w.at(every, probe);
    };
    w.at(0, probe);
  }
}
