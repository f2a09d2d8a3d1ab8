/**
 * One simulated run of the real code from one seed: bricks (real Brick on SimStorage), clients (real
 * Volume/DhtClient), a rebalancer (real Rebalancer, safe or legacy protocol) over SimNetwork, a workload
 * of clients with open fds that write, truncate, fsync, read, look up, list and notify each other, and
 * that create, truncate, rename and unlink files of their own while the others read them, and faults:
 * migrator crashes and restarts, broken connections, brick restarts and power losses. The history is
 * checked for S1 (no stale read), S2 (no lost write), S4 (always visible) and, at the end, S5 (clean
 * bricks). Namespace operations are checked against a model of each client's own names (see NsModel).
 */
import { codeOf, ignoreCodes } from '../common/errors.js';
import { planted } from '../common/plant.js';
import { Brick } from '../brick/brick.js';
import { DhtClient } from '../dht/client.js';
import type { VolumeSpec } from '../dht/spec.js';
import { Volume, type FileHandle } from '../api/volume.js';
import { Rebalancer, type Checkpoint } from '../rebalance/rebalancer.js';
import { RpcClient, serveConnection } from '../wire/rpc.js';
import type { Listener } from '../wire/transport.js';
import { World } from './world.js';
import { SimNetwork } from './net.js';
import { SimStorage } from './storage.js';
import { simLocalFiles, type LocalCounts } from './local.js';
import { classicKnobs, drawKnobs, mixRoll, type Knobs } from './options.js';
import { NameModel, namer, seedTree, type NamerEnv } from './names.js';
import { checkNamespace } from './checkers/namespace.js';
import { S3Checker } from './checkers/s3.js';

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

const VOLUME_ID = '5e5e5e5e-0000-4000-8000-000000000001';
const REGION = 8;

type VC = number[];
interface Op {
  id: number;
  client: number;
  kind: 'write' | 'read' | 'fsync';
  file: number;
  region: number;
  token: number;
  issue: VC;
  ack: VC | null;
  /** Virtual time of issue and ack. */
  t0: number;
  t1: number;
  failed: boolean;
}

const token8 = (t: number) => Buffer.from(String(t).padStart(REGION, '0'));

export async function runSeed(o: SimOptions): Promise<SimResult> {
  const w = new World(o.seed);
  const rng = w.rng;
  const net = new SimNetwork(w);
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
  const F = kn.files;
  const R = kn.regions;
  const C = kn.clients;
  const N = kn.opsPerClient;
  const faults = kn.faults.on;
  const fk = kn.faults;
  // Names drawn from the seed, so that which files must move differs from seed to seed.
  const fileNames = Array.from({ length: F }, (_, j) => `f${j}-${w.rng.int(1_000_000)}`);
  const fp = (f: number) => `/d/${fileNames[f]}`;
  // Each client's own names, which it creates, truncates, renames and unlinks while the others read them.
  const ownNames = Array.from({ length: C }, (_, k) => Array.from({ length: 3 }, (_, j) => `n${k}${j}-${w.rng.int(1_000_000)}`));
  const trace: string[] = [];
  const log = (m: string) => trace.push(`${w.now.toFixed(2).padStart(9)} ${m}`);
  const violations: string[] = [];
  planted.clear();
  for (const p of o.plant ?? []) planted.add(p);

  // --- bricks ----------------------------------------------------------------------------------------
  const nBricks = 3;
  const removeBrick = kn.topology === 'remove-brick';
  const drained = removeBrick ? `sv-client-${rng.int(3)}` : null;
  const storages = Array.from({ length: nBricks }, () => new SimStorage(w, kn.disk));
  // The simulated files are small, and a small file goes from its copy straight to the freeze: on some
  // seeds every file makes the recopy rounds of a large one instead.
  const settleBytes = kn.recopyRounds ? 0 : undefined;
  // Bricks on one host: migrations copy from disk to disk (migPull); otherwise through the migrator.
  const host = kn.sameHost ? { name: 'host0', storages: new Map<string, SimStorage>() } : null;
  if (host) {
    storages.forEach((st, i) => {
      st.id = `/bricks/b${i}`;
      st.host = host;
      host.storages.set(st.id, st);
    });
  }
  const listeners: (Listener | null)[] = new Array(nBricks).fill(null);
  const names = storages.map((_, i) => `sv-client-${i}`);
  const start = async (i: number) => {
    const b = new Brick(storages[i], { name: names[i], volumeId: VOLUME_ID, xattrPrefix: 'trusted.' }, w.clock, w.random);
    const faulty = storages[i].faulty;
    storages[i].faulty = false; // a brick that cannot start is not what this simulates
    try {
      b.init();
    } finally {
      storages[i].faulty = faulty;
    }
    listeners[i] = await net.listen(`b${i}`, 1000, (c) => serveConnection(c, b, { volumeId: VOLUME_ID, secret: 's', adminSecret: 'a', brickName: names[i], random: w.random, log: () => {} }));
  };
  for (let i = 0; i < nBricks; i++) await start(i);
  const spec: VolumeSpec = {
    name: 'sv',
    volumeId: VOLUME_ID,
    secret: 's',
    adminSecret: 'a',
    // add-brick: two bricks, a third joins; remove-brick: three bricks, one is drained.
    bricks: names.slice(0, removeBrick ? 3 : 2).map((n, i) => ({ name: n, host: `b${i}`, port: 1000 })),
    options: { migrationProtocol: o.protocol ?? 'safe', minFreeDisk: 0 },
  };
  let procSeq = 0;
  const dead = new Set<string>();
  const connect = async (who: string): Promise<Volume> => {
    const v = new Volume(new DhtClient(spec, net.as(who), w.clock, w.random, { clientName: who }));
    await v.client.connect();
    return v;
  };

  // Everything runs inside the world: the driver is one async task among the simulated ones.
  let finished = false;
  let driverError: unknown = null;
  const ops: Op[] = [];
  const vcs: VC[] = Array.from({ length: C }, () => new Array(C).fill(0));
  let tokenSeq = 1;
  let migrated = 0;
  let rebalanceRuns = 0;
  let lateMigrations = 0;
  const local: LocalCounts = { reads: 0, writes: 0, recorded: 0 };
  const models = ownNames.map((ns, k) => new NsModel(k, ns, violations));
  const ownerOf = new Map(ownNames.flatMap((ns, k) => ns.map((n) => [n, k] as const)));
  const allOwn = ownNames.flat();
  // Reads of names are checked once the workload is over, when every operation they overlapped is known.
  const nsChecks: (() => void)[] = [];
  const parseToken = (b: Buffer, what: string): number | null => {
    if (b.length === 0) return 0;
    if (/^\d{8}$/.test(b.toString())) return Number(b.toString());
    violations.push(`S1 ${what}: read garbage ${JSON.stringify(b.toString())}`);
    return null;
  };

  let namerOps = 0;
  const driver = async () => {
    // Setup: files on the first two bricks.
    const admin = await connect('setup');
    await admin.mkdir('/d');
    for (let f = 0; f < F; f++) {
      const h = await admin.open(fp(f), 'w');
      await h.write(Buffer.concat(Array.from({ length: R }, () => token8(0))), 0, R * REGION, 0);
      await h.sync();
      await h.close();
    }
    // The names workload's starting tree: every kind of name, hard links among them.
    const tree = new NameModel();
    const namerEnv: NamerEnv = {
      rng,
      log,
      violation: (m) => violations.push(m),
      sync: () => storages.forEach((st) => st.syncNow()),
      sleep: (ms) => w.clock.sleep(ms),
      lossyLosses: () => (kn.disk.durability === 'sync' ? 0 : powerLosses.length),
    };
    if (kn.namer.tree > 0) {
      await admin.mkdir('/t');
      await seedTree(admin, tree, namerEnv, kn.namer.tree);
    }
    await admin.close();
    for (const st of storages) st.syncNow(); // the operator's sync(1)
    /** The whole namespace under /t against the model, through a fresh client. */
    const checkNames = async (when: string) => {
      if (kn.namer.tree === 0) return;
      const v = await connect(`check${++procSeq}`);
      try {
        for (const x of await checkNamespace(v, tree, when)) violations.push(x);
      } finally {
        await v.close();
      }
    };
    // The topology changes: a third brick joins, or one is drained. Clients learn it from the bricks.
    const before = spec.bricks;
    spec.bricks = names.map((n, i) => ({ name: n, host: `b${i}`, port: 1000 }));
    spec.version = 1;
    spec.decommissioned = drained ? [drained] : [];
    log(removeBrick ? `remove-brick ${drained}` : 'add-brick sv-client-2');
    for (let i = 0; i < nBricks; i++) {
      const r = await RpcClient.connect(net.as('cli'), `b${i}`, 1000, { volumeId: VOLUME_ID, secret: 's', adminSecret: 'a' });
      await r.call('setTopology', { topology: { version: 1, bricks: spec.bricks, decommissioned: spec.decommissioned } });
      r.close();
    }
    await checkNames(removeBrick ? 'remove-brick start' : 'add-brick');
    const clientSpec: VolumeSpec = { ...spec, bricks: before, version: 0, decommissioned: [] }; // clients connected before the change
    const apps = await Promise.all(
      Array.from({ length: C }, async (_, k) => {
        // With the bricks on one host, the clients are on it too: they read some of their files' bytes
        // from the bricks' files themselves (local reads).
        const files = host ? simLocalFiles(host.name, host.storages, () => rng.chance(kn.local), local) : null;
        const v = new Volume(new DhtClient(clientSpec, net.as(`app${k}`), w.clock, w.random, { clientName: `app${k}` }), files);
        await v.client.connect();
        const fds: FileHandle[] = [];
        for (let f = 0; f < F; f++) fds.push(await v.open(fp(f), 'r+'));
        return { v, fds };
      }),
    );

    // The rebalancer: crashes at random and restarts from its checkpoint.
    let saved: Checkpoint | null = null;
    const store = { load: () => saved, save: (c: Checkpoint) => void (saved = structuredClone(c)) };
    let rebalanceDone = false;
    const rebalance = async () => {
      for (let run = 0; run < 6 && !rebalanceDone; run++) {
        const who = `mig${++procSeq}`;
        const willCrash = faults && run < 4 && rng.chance(fk.migratorCrash);
        let vol: Volume;
        try {
          vol = await connect(who);
        } catch {
          continue;
        }
        if (willCrash) {
          const after = 2 + rng.int(fk.migratorLife);
          w.at(after, () => {
            log(`migrator ${who} crashes`);
            dead.add(who);
            net.kill(who);
          });
        }
        log(`rebalance ${who} starts`);
        const r = await new Rebalancer(vol.client, { store, force: removeBrick, throttle: 1 + rng.int(2), migrate: { leaseMs: 50, chunk: 4, settleBytes }, log: (m) => log(`${who}: ${m}`) })
          .run()
          .catch((e) => ({ state: 'failed', error: String(e) }) as Checkpoint);
        log(`rebalance ${who}: ${r.state}${r.error ? ` (${r.error})` : ''}, ${r.counters?.migrated ?? 0} migrated`);
        migrated = Math.max(migrated, r.counters?.migrated ?? 0);
        rebalanceRuns++;
        vol.client.close();
        if (r.state === 'completed' && !dead.has(who)) rebalanceDone = true;
        await w.clock.sleep(1 + rng.int(5));
      }
    };

    // Namespace operations on a client's own names, checked against its model.
    // Another application learns, a little later, of everything `vc` covers (by default: app k's past).
    const notifyOther = (k: number, vc: VC = [...vcs[k]]) => {
      const to = (k + 1 + rng.int(C - 1)) % C;
      w.at(0.01 + rng.int(50) / 100, () => {
        vcs[to] = vcs[to].map((x, j) => Math.max(x, vc[j]));
        log(`app${k} notifies app${to}`);
      });
    };
    const nsOp = async (k: number, v: Volume) => {
      const m = models[k];
      const r = rng.int(100);
      const kind: NsKind = r < 40 ? 'put' : r < 55 ? 'trunc' : r < 80 ? 'rename' : 'unlink';
      const a = m.names[rng.int(m.names.length)];
      const b = m.names.filter((n) => n !== a)[rng.int(m.names.length - 1)];
      const token = kind === 'put' ? tokenSeq++ : 0;
      const issue = [...vcs[k]];
      const t0 = w.now;
      let outcome: 'ok' | 'ENOENT' | 'unknown' = 'ok';
      try {
        if (kind === 'put') {
          const h = await v.open(`/d/${a}`, 'w');
          try {
            await h.write(token8(token), 0, REGION, 0);
            await h.sync();
          } finally {
            await h.close().catch(() => {});
          }
        } else if (kind === 'trunc') {
          const h = await v.open(`/d/${a}`, 'r+');
          try {
            await h.truncate(0);
            await h.sync();
          } finally {
            await h.close().catch(() => {});
          }
        } else if (kind === 'rename') await v.rename(`/d/${a}`, `/d/${b}`);
        else await v.unlink(`/d/${a}`);
      } catch (e) {
        outcome = codeOf(e) === 'ENOENT' ? 'ENOENT' : 'unknown';
        log(`app${k} ${kind} ${a}: ${(e as Error).message}`);
      }
      vcs[k][k]++;
      const ack = [...vcs[k]];
      m.record({ kind, a, b, token, issue, ack, t0, t1: w.now, outcome });
      log(`app${k} ${kind} ${a}${kind === 'rename' ? ` -> ${b}` : ''}${kind === 'put' ? ` = ${token}` : ''}: ${outcome}`);
      if (outcome === 'ok' && rng.chance(0.5)) notifyOther(k);
    };
    // A read by path of any client's name: its content, or absent.
    const nsRead = async (k: number, v: Volume) => {
      const name = allOwn[rng.int(allOwn.length)];
      const issue = [...vcs[k]];
      let got: number | null;
      try {
        const h = await v.open(`/d/${name}`, 'r');
        try {
          const b = Buffer.alloc(REGION + 1);
          const { bytesRead } = await h.read(b, 0, REGION + 1, 0);
          const t = parseToken(b.subarray(0, bytesRead), `app${k} read /d/${name}`);
          if (t === null) return;
          got = t;
        } finally {
          await h.close().catch(() => {});
        }
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') {
          log(`app${k} read ${name} failed: ${codeOf(e)}`);
          vcs[k][k]++;
          return;
        }
        got = null;
      }
      const t1 = w.now;
      nsChecks.push(() => !lossy(t1) && models[ownerOf.get(name)!].check(k, name, got, issue, t1, `read at ${t1.toFixed(2)}`));
      log(`app${k} read ${name} = ${got === null ? 'absent' : got}`);
      vcs[k][k]++;
    };

    // The workload: each client runs its ops one after another.
    const client = async (k: number) => {
      const { v, fds } = apps[k];
      // At least N operations, and on until the rebalance is over (so migrations meet live I/O).
      for (let i = 0; i < N || (!rebalanceDone && rebalanceRuns < 6 && i < 6 * N); i++) {
        const roll = rng.int(100);
        const what = mixRoll(kn.mix, roll);
        const f = rng.int(F);
        let region = rng.int(R);
        const op: Op = { id: ops.length, client: k, kind: 'read', file: f, region, token: 0, issue: [...vcs[k]], ack: null, t0: w.now, t1: 0, failed: false };
        try {
          if (what === 'nsOp') {
            await nsOp(k, v);
            await w.clock.sleep(rng.int(300) / 100);
            continue;
          }
          if (what === 'nsRead') {
            await nsRead(k, v);
            await w.clock.sleep(rng.int(300) / 100);
            continue;
          }
          if (what === 'trunc') {
            // truncate through the fd: the size is register R, its value the bytes past the regions.
            op.kind = 'write';
            op.token = tokenSeq++;
            op.region = region = R;
            ops.push(op);
            await fds[f].truncate(R * REGION + op.token);
          } else if (what === 'write') {
            op.kind = 'write';
            op.token = tokenSeq++;
            ops.push(op);
            await fds[f].write(token8(op.token), 0, REGION, region * REGION);
            if (rng.chance(0.5)) {
              // The seed timeline: write, fsync, notify another application.
              await fds[f].sync();
              const vc = [...vcs[k]];
              vc[k]++; // the write itself
              notifyOther(k, vc);
            }
          } else if (what === 'fsync') {
            op.kind = 'fsync';
            ops.push(op);
            await fds[f].sync();
          } else if (what === 'read') {
            ops.push(op);
            if (rng.chance(1 / (R + 1))) {
              op.region = region = R;
              op.token = (await fds[f].stat()).size - R * REGION;
              if (op.token < 0) violations.push(`S1 ${fmt(op)}: size ${op.token + R * REGION} is below the regions`);
            } else {
            const b = Buffer.alloc(REGION);
            await fds[f].read(b, 0, REGION, region * REGION);
            op.token = Number(b.toString());
            if (!/^\d{8}$/.test(b.toString())) violations.push(`S1 ${fmt(op)}: read garbage ${JSON.stringify(b.toString())}`);
            }
          } else if (what === 'lookup') {
            // A fresh lookup by path (S4), then a read through it.
            ops.push(op);
            const h = await v.open(fp(f), 'r');
            const b = Buffer.alloc(REGION);
            await h.read(b, 0, REGION, region * REGION);
            await h.close();
            op.token = Number(b.toString());
          } else if (what === 'list') {
            const issue = [...vcs[k]];
            const list = await v.readdir('/d', { whole: true }); // S4 holds for whole listings
            const fixed = list.filter((n) => !ownerOf.has(n));
            if (JSON.stringify(fixed) !== JSON.stringify([...fileNames].sort())) violations.push(`S4 client ${k} listed ${JSON.stringify(list)}`);
            const unknown = fixed.filter((n) => !fileNames.includes(n));
            if (unknown.length) violations.push(`S4 client ${k} listed unknown names ${JSON.stringify(unknown)}`);
            const t1 = w.now;
            nsChecks.push(() => {
              if (lossy(t1)) return;
              for (const n of allOwn) {
                const m = models[ownerOf.get(n)!];
                const present = list.includes(n);
                const allowed = [...m.allowed(n, issue, t1)];
                if (!allowed.some((x) => (x !== null) === present)) violations.push(`S4 app${k} readdir ${present ? 'listed' : 'missed'} ${n} at ${t1.toFixed(2)}: app${m.owner}'s states allow only ${allowed.map((x) => (x === null ? 'absent' : 'present')).join('/')}`);
              }
            });
          } else {
            // notify: another client's next operations happen after everything this one has done.
            const to = rng.int(C);
            const vc = vcs[k];
            w.at(0.01 + rng.int(200) / 100, () => {
              vcs[to] = vcs[to].map((x, j) => Math.max(x, vc[j]));
              log(`app${k} notifies app${to}`);
            });
          }
          op.ack = [...vcs[k]];
          op.t1 = w.now;
          vcs[k][k]++;
          op.ack[k] = vcs[k][k];
          if (op.kind !== 'read' || what === 'read') log(`app${k} ${op.kind} f${f}[${region}]${op.kind === 'fsync' ? '' : ` = ${op.token}`}`);
        } catch (e) {
          op.failed = true;
          op.t1 = w.now;
          const code = codeOf(e);
          if (code === 'ENOENT' || code === 'ESTALE') violations.push(`S4 app${k} ${op.kind} f${f}: ${(e as Error).message}${o.stacks ? ` ${(e as Error).stack}` : ""}`);
          log(`app${k} ${op.kind} f${f} failed: ${code}`);
          vcs[k][k]++;
        }
        await w.clock.sleep(rng.int(300) / 100);
      }
    };

    // Faults while the workload runs.
    let workloadDone = false;
    const chaos = async () => {
      while (faults && !workloadDone) {
        await w.clock.sleep(fk.period + rng.int(fk.jitter));
        const r = rng.int(100);
        if (r < fk.breakConn) {
          log('network: a connection breaks');
          net.breakOne();
        } else if (r < fk.breakConn + fk.restart) {
          const i = rng.int(nBricks);
          const power = rng.chance(fk.powerLoss);
          log(`brick b${i} restarts${power ? ' after a power loss' : ''}`);
          await listeners[i]?.close();
          net.cut(`b${i}`);
          storages[i].brickExited();
          if (power) {
            if (kn.disk.durability !== 'sync') for (const m of models) m.lossy = true;
            storages[i].crash();
            log(`b${i} lost: ${storages[i].lastDropped.join(', ')}`);
            powerLosses.push(w.now);
          }
          await w.clock.sleep(1 + rng.int(5));
          await start(i);
        }
      }
    };
    const powerLosses: number[] = [];
    /**
     * Whether the clients' own names may have lost changes by `t`: a power loss on a disk that holds
     * names only once their directory is fsynced (the clients never fsync one, as most programs; a
     * brick does not either, as GlusterFS's does not). Their reads and final state are then not checked
     * against the model; the fixed files, made durable, still are.
     */
    const lossy = (t: number) => kn.disk.durability !== 'sync' && powerLosses.some((p) => p <= t);

    for (const st of storages) st.faulty = faults;
    const rb = rebalance();
    const ch = chaos();
    const naming = async () => {
      if (kn.namer.ops === 0) return;
      let v: Volume | null = null;
      for (let i = 0; !v; i++) {
        v = await connect('namer').catch((e: unknown) => {
          if (i >= 50) throw e;
          return null;
        });
        if (!v) await w.clock.sleep(10);
      }
      await namer(v, tree, namerEnv, kn.namer.ops, kn.namer.pause, kn.namer.tree, kn.namer.settle);
      await v.close();
    };
    await Promise.all([...Array.from({ length: C }, (_, k) => client(k)), naming()]);
    namerOps = tree.ops;
    workloadDone = true;
    await ch;
    await rb;
    for (const st of storages) st.faulty = false;
    // A last, fault-free rebalance finishes whatever the crashed ones left.
    if (!rebalanceDone) {
      const vol = await connect(`mig${++procSeq}`);
      const r = await new Rebalancer(vol.client, { store, restart: true, force: removeBrick, log: (m) => log(`last rebalance: ${m}`) }).run();
      if (r.state !== 'completed') violations.push(`L1 final rebalance ${r.state}: ${r.error}`);
      lateMigrations += r.counters.migrated;
      vol.client.close();
    }
    const vol = await connect(`final${++procSeq}`);
    const r = await new Rebalancer(vol.client, { store, restart: true, force: removeBrick, log: (m) => log(`final rebalance: ${m}`) }).run();
    if (r.state !== 'completed') violations.push(`L1 final rebalance ${r.state}: ${r.error}`);

    // S2: a final read of every region, after everything.
    const finalVc = vcs.reduce((a, b) => a.map((x, j) => Math.max(x, b[j])));
    for (let f = 0; f < F; f++) {
      const data = await vol.readFile(fp(f));
      for (let region = 0; region <= R; region++) {
        const t = region === R ? data.length - R * REGION : Number(data.toString('utf8', region * REGION, region * REGION + REGION));
        ops.push({ id: ops.length, client: -1, kind: 'read', file: f, region, token: t, issue: finalVc, ack: finalVc, t0: w.now, t1: w.now, failed: false });
      }
    }
    for (const c of nsChecks) c();
    // The namespace: every client's names together must match one state its model allows.
    const present: string[] = [];
    for (const m of models) {
      const seen: NsState = {};
      for (const n of m.names) {
        try {
          const t = parseToken(await vol.readFile(`/d/${n}`), `final read of /d/${n}`);
          if (t !== null) seen[n] = t;
          present.push(n);
        } catch (e) {
          ignoreCodes(e, 'ENOENT');
        }
      }
      if (!lossy(w.now) && !m.current.some((s) => key(s) === key(seen))) violations.push(`S2 app${m.owner}'s names end as ${key(seen)}, but its operations allow only ${m.current.map(key).join(' | ')}`);
    }
    const want = [...fileNames, ...present].sort();
    const list = await vol.readdir('/d', { whole: true });
    if (JSON.stringify(list) !== JSON.stringify(want)) violations.push(`S4 final listing is ${JSON.stringify(list)}, expected ${JSON.stringify(want)}`);
    await vol.close();
    for (const a of apps) await a.v.close().catch(() => {});
    await checkNames(removeBrick ? 'the drain' : 'the rebalance');
    if (drained) {
      // remove-brick commit: the drained brick leaves the topology; a new client must see every name.
      spec.bricks = spec.bricks.filter((b) => b.name !== drained);
      spec.version = 2;
      spec.decommissioned = [];
      for (let i = 0; i < nBricks; i++) {
        const r = await RpcClient.connect(net.as('cli'), `b${i}`, 1000, { volumeId: VOLUME_ID, secret: 's', adminSecret: 'a' });
        await r.call('setTopology', { topology: { version: 2, bricks: spec.bricks, decommissioned: [] } });
        r.close();
      }
      // The removed brick stops (the CLI stops its process): what was left on it is gone.
      const d = names.indexOf(drained);
      await listeners[d]?.close();
      net.cut(`b${d}`);
      log(`remove-brick ${drained} commit`);
      await checkNames('remove-brick commit');
    }
    checkHistory(ops, powerLosses, violations);
    // The clients' own names after a power loss that may have taken back part of a rename or a create
    // (nobody fsynced their directory): what the bricks hold of them is not checked for S5.
    // A name of /t with several (hard links) keeps its data where it is in a rebalance, each other name a
    // linkto on its hashed brick (GlusterFS's rule): those linkto files are meant to stay.
    const multi = new Set([...tree.paths].filter(([, ino]) => tree.linksOf(ino).length > 1).map(([p]) => p.slice(1)));
    checkBricks(storages, names, want, violations, drained, lossy(w.now) ? new Set(allOwn.map((n) => `d/${n}`)) : new Set(), tree.uncertain ? null : multi);
  };

  if (o.probe) {
    let last = '';
    const probe = () => {
      const view = storages
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
      if (view !== last) log(`probe ${view}`);
      last = view;
      if (!finished) w.at(o.probe!, probe);
    };
    w.at(0, probe);
  }
  driver().then(
    () => (finished = true),
    (e) => {
      driverError = e;
      finished = true;
    },
  );
  // Errors are many and expected (ENOENT, EMOVED, injected EIO); their stacks cost more than the rest of
  // their handling. A replay (`--seed`) keeps them, for a driver error's stack.
  // S3 after every event that changed a disk (the legacy protocol breaks it by design: two data copies).
  const s3 = new S3Checker(storages, names);
  w.afterEvent = () => s3.check(w.now);
  const stackLimit = Error.stackTraceLimit;
  if (!o.stacks) Error.stackTraceLimit = 0;
  try {
    await w.run(() => finished, 600_000);
  } finally {
    Error.stackTraceLimit = stackLimit;
  }
  for (const v of s3.found.values()) violations.push(v);
  if (driverError) violations.push(`driver: ${(driverError as Error)?.stack ?? driverError}`);
  if (!finished) violations.push('L1: the run did not finish (deadlock)');
  planted.clear();
  return { seed: o.seed, migrated, lateMigrations, local, violations, ops: ops.length, events: w.events, virtualMs: w.now, trace, storages, knobs: kn, names: namerOps };
}

function fmt(op: Op): string {
  return `app${op.client} ${op.kind} f${op.file}[${op.region}] at ${op.t0.toFixed(2)}`;
}

/** hb: a completed operation of client c with ack vector `ack` happened before an operation issued at `issue`. */
function hb(a: Op, issue: VC): boolean {
  return a.ack !== null && a.client >= 0 && a.ack[a.client] <= issue[a.client];
}

/**
 * S1/S2: a read may not return a write that another write, known to have happened before the read,
 * overwrote (in happened-before order); nor garbage. Writes that failed (their outcome unknown) and
 * writes not yet fsynced when a power loss hit may be missing: they never count as overwriters and are
 * never required.
 */
function checkHistory(ops: Op[], powerLosses: number[], violations: string[]): void {
  const writes = ops.filter((o) => o.kind === 'write');
  const fsyncs = ops.filter((o) => o.kind === 'fsync' && !o.failed && o.ack);
  const durable = (wr: Op) => fsyncs.some((s) => s.file === wr.file && s.t0 >= wr.t1);
  const certain = (wr: Op) => !wr.failed && wr.ack !== null && !powerLosses.some((t) => t >= wr.t1 && !fsyncs.some((s) => s.file === wr.file && s.t0 >= wr.t1 && s.t1 <= t));
  const byToken = new Map(writes.map((x) => [x.token, x]));
  for (const r of ops) {
    if (r.kind !== 'read' || r.failed || r.ack === null) continue;
    const before = writes.filter((x) => x.file === r.file && x.region === r.region && certain(x) && hb(x, r.issue));
    const got = r.token === 0 ? null : byToken.get(r.token);
    if (r.token !== 0 && (!got || got.file !== r.file || got.region !== r.region)) {
      violations.push(`S1 ${r.client >= 0 ? fmt(r) : 'final read'} returned ${r.token}, which was never written there`);
      continue;
    }
    if (got && got.client >= 0 && got.issue[got.client] >= r.ack[got.client] && got.client === r.client && got.id > r.id) {
      violations.push(`S1 ${fmt(r)} returned a write issued after it`);
    }
    // A write that happened before the read and is newer (hb) than what the read returned.
    const newer = before.find((x) => (got ? x !== got && hb(got, x.issue) : true));
    if (newer) {
      const what = r.client >= 0 ? fmt(r) : `final read of f${r.file}[${r.region}]`;
      violations.push(`${r.client >= 0 ? 'S1 stale read' : 'S2 lost write'}: ${what} returned ${r.token} but write ${newer.token} (app${newer.client}, acked ${newer.t1.toFixed(2)}${durable(newer) ? ', fsynced' : ''}) happened before it`);
    }
  }
}

/** S5: each file once, as a plain data file, on its hashed brick; no linkto, copy or commit record left. */
function checkBricks(storages: SimStorage[], names: string[], files: string[], violations: string[], drained: string | null, lenient: Set<string>, linked: Set<string> | null): void {
  const seen = new Map<string, number>();
  storages.forEach((st, i) => {
    const walk = (dir: string) => {
      for (const e of st.readdir(dir)) {
        const p = dir ? `${dir}/${e.name}` : e.name;
        if (p === '.glusterfs') continue;
        if (e.type === 'dir') {
          walk(p);
          continue;
        }
        if (lenient.has(p)) continue;
        const s = st.lstat(p);
        const linkto = st.getxattr(p, 'trusted.glusterfs.dht.linkto');
        if ((s.mode & 0o7777) === 0o1000 && linkto) {
          // Under /t: a name of a file with several (hard links), or any when the names are not known.
          if (p.startsWith('t/') && (linked === null || linked.has(p))) continue;
          violations.push(`S5 linkto left: ${p} on ${names[i]}`);
          continue;
        }
        if (s.mode & 0o7000) violations.push(`S5 S/T bits on ${p} on ${names[i]}`);
        if (st.getxattr(p, 'trusted.dhtfs.migration')) violations.push(`S5 commit record left on ${p} on ${names[i]}`);
        // A rename's mark whose removal a power loss took back, the rename itself kept (the namer's names
        // are then not known): its next client settles it.
        if (st.getxattr(p, 'trusted.dhtfs.rename') && !(p.startsWith('t/') && linked === null)) violations.push(`S5 unfinished rename left on ${p} on ${names[i]}`);
        if (seen.has(p)) violations.push(`S5 ${p} has data on ${names[seen.get(p)!]} and ${names[i]}`);
        if (names[i] === drained) violations.push(`remove-brick: ${p} is still on the drained brick ${drained}`);
        seen.set(p, i);
      }
    };
    walk('');
    try {
      const left = st.readdir('.glusterfs/dhtfs-migrate');
      if (left.length) violations.push(`S5 migration copies left on ${names[i]}: ${left.map((e) => e.name).join(', ')}`);
    } catch {
      /* none made */
    }
  });
  for (const f of files) if (!seen.has(`d/${f}`) && !lenient.has(`d/${f}`)) violations.push(`S5 d/${f} has no data file`);
}

// --- the namespace model ---------------------------------------------------------------------------

/** A client's own names and their contents: name -> token (0 = empty file); a missing name is absent. */
type NsState = Record<string, number>;
export type NsKind = 'put' | 'trunc' | 'rename' | 'unlink';
interface NsOp {
  kind: NsKind;
  a: string;
  b: string;
  token: number;
  issue: VC;
  ack: VC;
  t0: number;
  t1: number;
  outcome: 'ok' | 'ENOENT' | 'unknown';
  /** What a reader may see while the operation runs (put: the truncated file before the data). */
  mid: NsState[];
  /** The possible states after it. */
  after: NsState[];
}

/** A state's identity: its names in order with their tokens (a hot path: no JSON, no array sort). */
const key = (s: NsState) => {
  let out = '';
  for (const k of Object.keys(s).sort()) out += `${k}=${s[k]};`;
  return out;
};
const uniq = (ss: NsState[]) => [...new Map(ss.map((s) => [key(s), s])).values()];

/** The operation applied to one state; null when it fails with ENOENT there. */
function applyNs(s: NsState, op: { kind: NsKind; a: string; b: string; token: number }): NsState | null {
  const n = { ...s };
  if (op.kind === 'put') {
    n[op.a] = op.token;
    return n;
  }
  if (!(op.a in n)) return null;
  if (op.kind === 'trunc') n[op.a] = 0;
  else if (op.kind === 'unlink') delete n[op.a];
  else {
    n[op.b] = n[op.a];
    delete n[op.a];
  }
  return n;
}

/**
 * Each client creates, truncates, renames and unlinks only its own names, one operation at a time, so
 * the states its names go through form one sequence; an operation whose outcome the client could not
 * learn (a broken connection) leaves both possibilities open, and later results narrow them again.
 * Another client's read of a name must return its value in a state no older than the last operation
 * that happened before the read, and no newer than the operations issued before the read returned.
 */
export class NsModel {
  readonly ops: NsOp[] = [];
  private states: NsState[] = [{}];
  /** A power loss may have taken back some of the owner's changes: operations are no longer checked. */
  lossy = false;
  constructor(
    readonly owner: number,
    readonly names: string[],
    private readonly violations: string[],
  ) {}

  /** Records a finished operation; returns false when its result fits no possible state. */
  record(op: Omit<NsOp, 'mid' | 'after'>): void {
    const before = this.states;
    const applied = before.map((s) => applyNs(s, op));
    let after: NsState[];
    if (op.outcome === 'ok') after = applied.filter((s): s is NsState => s !== null);
    else if (op.outcome === 'ENOENT') after = before.filter((_, i) => applied[i] === null);
    else {
      // Not known whether it happened. A put may have truncated without writing; a rename interrupted
      // between its steps may leave the file under both names (never under neither: nothing is lost).
      const partial = op.kind === 'put' ? before.map((s) => ({ ...s, [op.a]: 0 })) : op.kind === 'rename' ? before.filter((s) => op.a in s).map((s) => ({ ...s, [op.b]: s[op.a] })) : [];
      after = [...before, ...applied.filter((s): s is NsState => s !== null), ...partial];
    }
    const mid = op.kind === 'put' ? before.map((s) => ({ ...s, [op.a]: 0 })) : [];
    if (after.length === 0) {
      if (!this.lossy) this.violations.push(`S4 app${this.owner} ${op.kind} ${op.a}${op.kind === 'rename' ? ` -> ${op.b}` : ''} ${op.outcome === 'ok' ? 'succeeded' : 'failed with ENOENT'} at ${op.t0.toFixed(2)}, impossible in every state its own earlier operations left: ${before.map(key).join(' | ')}`);
      after = before; // go on checking from the states before
    }
    this.states = uniq(after).slice(0, 256);
    this.ops.push({ ...op, mid, after: this.states });
  }

  /** The values (null: absent) a read of `name` issued at `issue` and returning at `t1` may see. */
  allowed(name: string, issue: VC, t1: number): Set<number | null> {
    let j0 = -1;
    this.ops.forEach((o, j) => {
      if (o.ack[this.owner] <= issue[this.owner]) j0 = j;
    });
    const out = new Set<number | null>();
    const add = (ss: NsState[]) => ss.forEach((s) => out.add(name in s ? s[name] : null));
    add(j0 < 0 ? [{}] : this.ops[j0].after);
    for (let j = j0 + 1; j < this.ops.length && this.ops[j].t0 <= t1; j++) {
      add(this.ops[j].mid);
      add(this.ops[j].after);
    }
    return out;
  }

  check(reader: number, name: string, got: number | null, issue: VC, t1: number, what: string): void {
    const ok = this.allowed(name, issue, t1);
    if (ok.has(got)) return;
    const recent = this.ops
      .filter((o) => o.a === name || o.b === name)
      .slice(-4)
      .map((o) => `${o.kind} ${o.a}${o.kind === 'rename' ? `->${o.b}` : ''}${o.kind === 'put' ? `=${o.token}` : ''} [${o.t0.toFixed(2)}-${o.t1.toFixed(2)} ${o.outcome}]`)
      .join(', ');
    const show = (v: number | null) => (v === null ? 'absent' : String(v));
    this.violations.push(`${got === null ? 'S4' : 'S1'} app${reader} ${what} ${name}: got ${show(got)}, allowed ${[...ok].map(show).join('/')}; app${this.owner}'s last operations on it: ${recent}`);
  }

  /** The states the names may be in now. */
  get current(): NsState[] {
    return this.states;
  }
}
