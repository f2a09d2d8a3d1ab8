/**
 * The clients' workload: each client, with an fd open on every fixed file, runs operations one after
 * another, drawn from the seed's mix: writes of a region (some fsynced and announced to another client:
 * the seed timeline), truncates, fsyncs, reads through the fd, lookups by path and reads, listings,
 * notifications, and operations on names of its own (create, truncate, rename, unlink) while the others
 * read them. What each operation returned goes to the checkers (checkers/history.ts for the fixed files,
 * checkers/own-names.ts for the own names, checkers/listing.ts for listings) as it completes.
 */
import { codeOf } from '../common/errors.js';
import type { FileHandle, Volume } from '../api/volume.js';
import type { World, Prng } from './world.js';
import { mixRoll, type Knobs, type OpKind } from './options.js';
import { fmt, type HistoryChecker, type Op, type VC } from './checkers/history.js';
import type { NsKind, OwnNames } from './checkers/own-names.js';
import { checkListing } from './checkers/listing.js';

/** Bytes per region: a token written as 8 digits. */
export const REGION = 8;
export const token8 = (t: number) => Buffer.from(String(t).padStart(REGION, '0'));

export interface App {
  v: Volume;
  /** An fd on every fixed file. */
  fds: FileHandle[];
}

export interface WorkloadEnv {
  w: World;
  rng: Prng;
  kn: Knobs;
  log: (m: string) => void;
  violations: string[];
  history: HistoryChecker;
  own: OwnNames;
  /** The fixed files' names under /d. */
  fileNames: string[];
  /** Whether the clients' own names may have lost changes by `t` (a power loss on a lossy disk). */
  lossy: (t: number) => boolean;
  /** Whether the rebalance still runs: clients go on past their operations until it is over. */
  rebalancing: () => boolean;
  /** Violations carry the error's stack. */
  stacks: boolean;
}

export class Workload {
  readonly vcs: VC[];
  private tokenSeq = 1;
  apps: App[] = [];

  constructor(private readonly e: WorkloadEnv) {
    const C = e.kn.clients;
    this.vcs = Array.from({ length: C }, () => new Array(C).fill(0));
  }

  fp(f: number): string {
    return `/d/${this.e.fileNames[f]}`;
  }

  /** Each client runs its operations one after another; resolves when all are done. */
  run(): Promise<void[]> {
    return Promise.all(this.apps.map((_, k) => this.client(k)));
  }

  /** Client k: at least opsPerClient operations, and on until the rebalance is over (so migrations meet live I/O). */
  private async client(k: number): Promise<void> {
    const { w, rng, kn } = this.e;
    const N = kn.opsPerClient;
    for (let i = 0; i < N || (this.e.rebalancing() && i < 6 * N); i++) {
      const roll = rng.int(100);
      const what = mixRoll(kn.mix, roll);
      const f = rng.int(kn.files);
      const region = rng.int(kn.regions);
      if (what === 'nsOp' || what === 'nsRead') {
        await (what === 'nsOp' ? this.nsOp(k) : this.nsRead(k));
        await w.clock.sleep(rng.int(300) / 100);
      } else await this.fileOp(k, what, f, region);
    }
  }

  /**
   * An operation on a fixed file (or a listing, or a notification), recorded and checked as it
   * completes, then the client's pause. (One function, each call awaited in it directly: the seeds'
   * schedules, those kept in test/sim.test.ts among them, depend on the microtasks between a reply and
   * the next draw from the seed.)
   */
  private async fileOp(k: number, what: OpKind, f: number, region: number): Promise<void> {
    const { w, rng, kn, log, history, violations } = this.e;
    const vcs = this.vcs;
    const R = kn.regions;
    const { fds, v } = this.apps[k];
    const fd = fds[f];
    const op: Op = { id: history.ops.length, client: k, kind: 'read', file: f, region, token: 0, issue: [...vcs[k]], ack: null, t0: w.now, t1: 0, failed: false };
    let tracked = true;
    try {
      if (what === 'trunc') {
        // truncate through the fd: the size is register R, its value the bytes past the regions.
        this.issue(op, 'write', R);
        await fd.truncate(R * REGION + op.token);
      } else if (what === 'write') {
        this.issue(op, 'write', region);
        await fd.write(token8(op.token), 0, REGION, region * REGION);
        if (rng.chance(0.5)) {
          // The seed timeline: write, fsync, notify another application.
          await fd.sync();
          const vc = [...vcs[k]];
          vc[k]++; // the write itself
          this.notifyOther(k, vc);
        }
      } else if (what === 'fsync') {
        this.issue(op, 'fsync', region);
        await fd.sync();
      } else if (what === 'read') {
        this.issue(op, 'read', region);
        if (rng.chance(1 / (R + 1))) {
          op.region = R;
          op.token = (await fd.stat()).size - R * REGION;
          if (op.token < 0) violations.push(`S1 ${fmt(op)}: size ${op.token + R * REGION} is below the regions`);
        } else {
          const b = Buffer.alloc(REGION);
          await fd.read(b, 0, REGION, region * REGION);
          op.token = Number(b.toString());
          if (!/^\d{8}$/.test(b.toString())) violations.push(`S1 ${fmt(op)}: read garbage ${JSON.stringify(b.toString())}`);
        }
      } else if (what === 'lookup') {
        // A fresh lookup by path (S4), then a read through it.
        this.issue(op, 'read', region);
        const h = await v.open(this.fp(f), 'r');
        const b = Buffer.alloc(REGION);
        await h.read(b, 0, REGION, region * REGION);
        await h.close();
        op.token = Number(b.toString());
      } else if (what === 'list') {
        tracked = false;
        const issue = [...vcs[k]];
        this.checkList(k, issue, await v.readdir('/d', { whole: true })); // S4 holds for whole listings
      } else {
        tracked = false;
        this.notify(k);
      }
      op.ack = [...vcs[k]];
      op.t1 = w.now;
      vcs[k][k]++;
      op.ack[k] = vcs[k][k];
      if (tracked) history.completed(op);
      if (op.kind !== 'read' || what === 'read') log(`app${k} ${op.kind} f${f}[${op.region}]${op.kind === 'fsync' ? '' : ` = ${op.token}`}`);
    } catch (e) {
      op.failed = true;
      op.t1 = w.now;
      const code = codeOf(e);
      if (code === 'ENOENT' || code === 'ESTALE') violations.push(`S4 app${k} ${op.kind} f${f}: ${(e as Error).message}${this.e.stacks ? ` ${(e as Error).stack}` : ''}`);
      log(`app${k} ${op.kind} f${f} failed: ${code}`);
      vcs[k][k]++;
    }
    await w.clock.sleep(rng.int(300) / 100);
  }

  /** The operation goes into the history as `kind` on `region` (a write with a new token). */
  private issue(op: Op, kind: Op['kind'], region: number): void {
    op.kind = kind;
    op.region = region;
    if (kind === 'write') op.token = this.tokenSeq++;
    this.e.history.issued(op);
  }

  /** notify: another client's next operations happen after everything this one has done. */
  private notify(k: number): void {
    const { rng, kn } = this.e;
    const to = rng.int(kn.clients);
    const vc = this.vcs[k];
    this.e.w.at(0.01 + rng.int(200) / 100, () => {
      this.vcs[to] = this.vcs[to].map((x, j) => Math.max(x, vc[j]));
      this.e.log(`app${k} notifies app${to}`);
    });
  }

  /** A whole listing of /d by client k: the fixed files now, the own names once settled. */
  private checkList(k: number, issue: VC, list: string[]): void {
    const { w, own, lossy, violations } = this.e;
    checkListing(k, list, this.e.fileNames, (n) => own.ownerOf.has(n), violations);
    const t1 = w.now;
    own.defer(
      t1,
      own.models.map((m) => m.owner),
      () => {
        if (lossy(t1)) return;
        for (const n of own.all) {
          const m = own.models[own.ownerOf.get(n)!];
          const present = list.includes(n);
          const allowed = [...m.allowed(n, issue, t1)];
          if (!allowed.some((x) => (x !== null) === present))
            violations.push(`S4 app${k} readdir ${present ? 'listed' : 'missed'} ${n} at ${t1.toFixed(2)}: app${m.owner}'s states allow only ${allowed.map((x) => (x === null ? 'absent' : 'present')).join('/')}`);
        }
      },
    );
  }

  /** Another application learns, a little later, of everything `vc` covers (by default: app k's past). */
  private notifyOther(k: number, vc: VC = [...this.vcs[k]]): void {
    const { w, rng, kn, log } = this.e;
    const to = (k + 1 + rng.int(kn.clients - 1)) % kn.clients;
    w.at(0.01 + rng.int(50) / 100, () => {
      this.vcs[to] = this.vcs[to].map((x, j) => Math.max(x, vc[j]));
      log(`app${k} notifies app${to}`);
    });
  }

  /** An operation of client k on its own names, recorded in its model. */
  private async nsOp(k: number): Promise<void> {
    const { w, rng, log, own } = this.e;
    const v = this.apps[k].v;
    const m = own.models[k];
    const r = rng.int(100);
    const kind: NsKind = r < 40 ? 'put' : r < 55 ? 'trunc' : r < 80 ? 'rename' : 'unlink';
    const a = m.names[rng.int(m.names.length)];
    const b = m.names.filter((n) => n !== a)[rng.int(m.names.length - 1)];
    const token = kind === 'put' ? this.tokenSeq++ : 0;
    const issue = [...this.vcs[k]];
    const t0 = w.now;
    own.begins(k, t0);
    let outcome: 'ok' | 'ENOENT' | 'unknown' = 'ok';
    try {
      if (kind === 'put' || kind === 'trunc') {
        const h = await v.open(`/d/${a}`, kind === 'put' ? 'w' : 'r+');
        try {
          if (kind === 'put') await h.write(token8(token), 0, REGION, 0);
          else await h.truncate(0);
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
    this.vcs[k][k]++;
    const ack = [...this.vcs[k]];
    m.record({ kind, a, b, token, issue, ack, t0, t1: w.now, outcome });
    log(`app${k} ${kind} ${a}${kind === 'rename' ? ` -> ${b}` : ''}${kind === 'put' ? ` = ${token}` : ''}: ${outcome}`);
    if (outcome === 'ok' && rng.chance(0.5)) this.notifyOther(k);
  }

  /** A read by path of any client's own name: its content, or absent; checked once the owner's overlapping operation ended. */
  private async nsRead(k: number): Promise<void> {
    const { w, rng, log, own, lossy } = this.e;
    const v = this.apps[k].v;
    const name = own.all[rng.int(own.all.length)];
    const issue = [...this.vcs[k]];
    let got: number | null;
    try {
      const h = await v.open(`/d/${name}`, 'r');
      try {
        const b = Buffer.alloc(REGION + 1);
        const { bytesRead } = await h.read(b, 0, REGION + 1, 0);
        const t = this.parseToken(b.subarray(0, bytesRead), `app${k} read /d/${name}`);
        if (t === null) return;
        got = t;
      } finally {
        await h.close().catch(() => {});
      }
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') {
        log(`app${k} read ${name} failed: ${codeOf(e)}`);
        this.vcs[k][k]++;
        return;
      }
      got = null;
    }
    const t1 = w.now;
    const owner = own.ownerOf.get(name)!;
    own.defer(t1, [owner], () => !lossy(t1) && own.models[owner].check(k, name, got, issue, t1, `read at ${t1.toFixed(2)}`));
    log(`app${k} read ${name} = ${got === null ? 'absent' : got}`);
    this.vcs[k][k]++;
  }

  /** A name's content as a token (0: empty); garbage is an S1 violation (null). */
  parseToken(b: Buffer, what: string): number | null {
    if (b.length === 0) return 0;
    if (/^\d{8}$/.test(b.toString())) return Number(b.toString());
    this.e.violations.push(`S1 ${what}: read garbage ${JSON.stringify(b.toString())}`);
    return null;
  }
}
