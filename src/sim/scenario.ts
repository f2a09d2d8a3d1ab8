/**
 * One simulated run of the real code from one seed: bricks (real Brick on SimStorage), clients (real
 * Volume/DhtClient), a rebalancer (real Rebalancer, safe or legacy protocol) over SimNetwork, a workload
 * of clients with open fds that write, fsync, read, look up, list and notify each other, and faults:
 * migrator crashes and restarts, broken connections, brick restarts and power losses. The history is
 * checked for S1 (no stale read), S2 (no lost write), S4 (always visible) and, at the end, S5 (clean
 * bricks).
 */
import { codeOf } from '../common/errors.js';
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
}

export interface SimResult {
  seed: number;
  /** Files migrated while the workload ran (the most any one run reports), and by the closing runs. */
  migrated: number;
  lateMigrations: number;
  violations: string[];
  ops: number;
  events: number;
  virtualMs: number;
  trace: string[];
  /** The bricks' disks, for inspection (debugging a seed). */
  storages?: SimStorage[];
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
  const F = o.files ?? 2;
  const R = o.regions ?? 2;
  const C = o.clients ?? 3;
  const N = o.opsPerClient ?? 40;
  const faults = o.faults ?? true;
  // Names drawn from the seed, so that which files must move differs from seed to seed.
  const fileNames = Array.from({ length: o.files ?? 2 }, (_, j) => `f${j}-${w.rng.int(1_000_000)}`);
  const fp = (f: number) => `/d/${fileNames[f]}`;
  const trace: string[] = [];
  const log = (m: string) => trace.push(`${w.now.toFixed(2).padStart(9)} ${m}`);
  const violations: string[] = [];
  planted.clear();
  for (const p of o.plant ?? []) planted.add(p);

  // --- bricks ----------------------------------------------------------------------------------------
  const nBricks = 3;
  const removeBrick = o.topology === 'remove-brick' || (o.topology === undefined && rng.chance(0.5));
  const drained = removeBrick ? `sv-client-${rng.int(3)}` : null;
  const storages = Array.from({ length: nBricks }, () => new SimStorage(w));
  const listeners: (Listener | null)[] = new Array(nBricks).fill(null);
  const names = storages.map((_, i) => `sv-client-${i}`);
  const start = async (i: number) => {
    const b = new Brick(storages[i], { name: names[i], volumeId: VOLUME_ID, xattrPrefix: 'trusted.' }, w.clock, w.random);
    b.init();
    listeners[i] = await net.listen(`b${i}`, 1000, (c) => serveConnection(c, b, { volumeId: VOLUME_ID, secret: 's', random: w.random, log: () => {} }));
  };
  for (let i = 0; i < nBricks; i++) await start(i);
  const spec: VolumeSpec = {
    name: 'sv',
    volumeId: VOLUME_ID,
    secret: 's',
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
    await admin.close();
    // The topology changes: a third brick joins, or one is drained. Clients learn it from the bricks.
    const before = spec.bricks;
    spec.bricks = names.map((n, i) => ({ name: n, host: `b${i}`, port: 1000 }));
    spec.version = 1;
    spec.decommissioned = drained ? [drained] : [];
    log(removeBrick ? `remove-brick ${drained}` : 'add-brick sv-client-2');
    for (let i = 0; i < nBricks; i++) {
      const r = await RpcClient.connect(net.as('cli'), `b${i}`, 1000, { volumeId: VOLUME_ID, secret: 's' });
      await r.call('setTopology', { topology: { version: 1, bricks: spec.bricks, decommissioned: spec.decommissioned } });
      r.close();
    }
    const clientSpec: VolumeSpec = { ...spec, bricks: before, version: 0, decommissioned: [] }; // clients connected before the change
    const apps = await Promise.all(
      Array.from({ length: C }, async (_, k) => {
        const v = new Volume(new DhtClient(clientSpec, net.as(`app${k}`), w.clock, w.random, { clientName: `app${k}` }));
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
        const willCrash = faults && run < 4 && rng.chance(0.35);
        let vol: Volume;
        try {
          vol = await connect(who);
        } catch {
          continue;
        }
        if (willCrash) {
          const after = 2 + rng.int(60);
          w.at(after, () => {
            log(`migrator ${who} crashes`);
            dead.add(who);
            net.kill(who);
          });
        }
        log(`rebalance ${who} starts`);
        const r = await new Rebalancer(vol.client, { store, force: removeBrick, throttle: 1 + rng.int(2), migrate: { leaseMs: 50, chunk: 4 } })
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

    // The workload: each client runs its ops one after another.
    const client = async (k: number) => {
      const { v, fds } = apps[k];
      // At least N operations, and on until the rebalance is over (so migrations meet live I/O).
      for (let i = 0; i < N || (!rebalanceDone && rebalanceRuns < 6 && i < 6 * N); i++) {
        const roll = rng.int(100);
        const f = rng.int(F);
        const region = rng.int(R);
        const op: Op = { id: ops.length, client: k, kind: 'read', file: f, region, token: 0, issue: [...vcs[k]], ack: null, t0: w.now, t1: 0, failed: false };
        try {
          if (roll < 35) {
            op.kind = 'write';
            op.token = tokenSeq++;
            ops.push(op);
            await fds[f].write(token8(op.token), 0, REGION, region * REGION);
            if (rng.chance(0.5)) {
              // The seed timeline: write, fsync, notify another application.
              await fds[f].sync();
              const to = (k + 1 + rng.int(C - 1)) % C;
              const vc = [...vcs[k]];
              vc[k]++;
              w.at(0.01 + rng.int(50) / 100, () => {
                vcs[to] = vcs[to].map((x, j) => Math.max(x, vc[j]));
                log(`app${k} notifies app${to}`);
              });
            }
          } else if (roll < 50) {
            op.kind = 'fsync';
            ops.push(op);
            await fds[f].sync();
          } else if (roll < 80) {
            ops.push(op);
            const b = Buffer.alloc(REGION);
            await fds[f].read(b, 0, REGION, region * REGION);
            op.token = Number(b.toString());
            if (!/^\d{8}$/.test(b.toString())) violations.push(`S1 ${fmt(op)}: read garbage ${JSON.stringify(b.toString())}`);
          } else if (roll < 88) {
            // A fresh lookup by path (S4), then a read through it.
            ops.push(op);
            const h = await v.open(fp(f), 'r');
            const b = Buffer.alloc(REGION);
            await h.read(b, 0, REGION, region * REGION);
            await h.close();
            op.token = Number(b.toString());
          } else if (roll < 94) {
            const list = await v.readdir('/d');
            const want = [...fileNames].sort();
            if (JSON.stringify(list) !== JSON.stringify(want)) violations.push(`S4 client ${k} listed ${JSON.stringify(list)}`);
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
          if (op.kind !== 'read' || roll < 80) log(`app${k} ${op.kind} f${f}[${region}]${op.kind === 'fsync' ? '' : ` = ${op.token}`}`);
        } catch (e) {
          op.failed = true;
          op.t1 = w.now;
          const code = codeOf(e);
          if (code === 'ENOENT' || code === 'ESTALE') violations.push(`S4 app${k} ${op.kind} f${f}: ${(e as Error).message}`);
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
        await w.clock.sleep(10 + rng.int(40));
        const r = rng.int(100);
        if (r < 30) {
          log('network: a connection breaks');
          net.breakOne();
        } else if (r < 45) {
          const i = rng.int(nBricks);
          const power = rng.chance(0.5);
          log(`brick b${i} restarts${power ? ' after a power loss' : ''}`);
          await listeners[i]?.close();
          net.cut(`b${i}`);
          if (power) {
            storages[i].crash();
            powerLosses.push(w.now);
          }
          await w.clock.sleep(1 + rng.int(5));
          await start(i);
        }
      }
    };
    const powerLosses: number[] = [];

    const rb = rebalance();
    const ch = chaos();
    await Promise.all(Array.from({ length: C }, (_, k) => client(k)));
    workloadDone = true;
    await ch;
    await rb;
    // A last, fault-free rebalance finishes whatever the crashed ones left.
    if (!rebalanceDone) {
      const vol = await connect(`mig${++procSeq}`);
      const r = await new Rebalancer(vol.client, { store, restart: true, force: removeBrick }).run();
      if (r.state !== 'completed') violations.push(`L1 final rebalance ${r.state}: ${r.error}`);
      lateMigrations += r.counters.migrated;
      vol.client.close();
    }
    const vol = await connect(`final${++procSeq}`);
    const r = await new Rebalancer(vol.client, { store, restart: true, force: removeBrick }).run();
    if (r.state !== 'completed') violations.push(`L1 final rebalance ${r.state}: ${r.error}`);

    // S2: a final read of every region, after everything.
    const finalVc = vcs.reduce((a, b) => a.map((x, j) => Math.max(x, b[j])));
    for (let f = 0; f < F; f++) {
      const data = await vol.readFile(fp(f));
      for (let region = 0; region < R; region++) {
        const t = Number(data.toString('utf8', region * REGION, region * REGION + REGION));
        ops.push({ id: ops.length, client: -1, kind: 'read', file: f, region, token: t, issue: finalVc, ack: finalVc, t0: w.now, t1: w.now, failed: false });
      }
    }
    if (JSON.stringify(await vol.readdir('/d')) !== JSON.stringify([...fileNames].sort())) violations.push('S4 final listing is wrong');
    await vol.close();
    for (const a of apps) await a.v.close().catch(() => {});
    checkHistory(ops, powerLosses, violations);
    checkBricks(storages, names, fileNames, violations, drained);
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
                return `${e.name.slice(0, 2)}${lt}${mv}`;
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
  await w.run(() => finished, 600_000);
  if (driverError) violations.push(`driver: ${(driverError as Error)?.stack ?? driverError}`);
  if (!finished) violations.push('L1: the run did not finish (deadlock)');
  planted.clear();
  return { seed: o.seed, migrated, lateMigrations, violations, ops: ops.length, events: w.events, virtualMs: w.now, trace, storages };
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
function checkBricks(storages: SimStorage[], names: string[], files: string[], violations: string[], drained: string | null): void {
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
        const s = st.lstat(p);
        const linkto = st.getxattr(p, 'trusted.glusterfs.dht.linkto');
        if ((s.mode & 0o7777) === 0o1000 && linkto) {
          violations.push(`S5 linkto left: ${p} on ${names[i]}`);
          continue;
        }
        if (s.mode & 0o7000) violations.push(`S5 S/T bits on ${p} on ${names[i]}`);
        if (st.getxattr(p, 'trusted.dhtfs.migration')) violations.push(`S5 commit record left on ${p} on ${names[i]}`);
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
  for (const f of files) if (!seen.has(`d/${f}`)) violations.push(`S5 d/${f} has no data file`);
}
