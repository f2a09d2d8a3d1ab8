/**
 * The clients' own names (S1, S4, and S2 at the end): each client creates, truncates, renames and unlinks
 * names of its own under /d while the others read and list them. Each owner's operations are kept in a
 * model of the states its names may be in (NsModel); another client's read or listing of a name is
 * checked against it as soon as every operation of the owner that overlapped it has ended (OwnNames,
 * after every event), and the names' final contents against the states the model allows.
 */
import type { VC } from './history.js';

/** A client's own names and their contents: name -> token (0 = empty file); a missing name is absent. */
export type NsState = Record<string, number>;
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
export const key = (s: NsState) => {
  let out = '';
  for (const k of Object.keys(s).sort()) out += `${k}=${s[k]};`;
  return out;
};

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
  /** When the owner's operation in progress began (null: none): reads overlapping it wait for its end. */
  busySince: number | null = null;
  /** The owner's names in key() order: a state holds no other names, so its key is read in this order without sorting. */
  private readonly sorted: string[];
  constructor(
    readonly owner: number,
    readonly names: string[],
    private readonly violations: string[],
  ) {
    this.sorted = [...names].sort();
  }

  /** key(s), for a state of these names. */
  private keyOf(s: NsState): string {
    let out = '';
    for (const k of this.sorted) if (k in s) out += `${k}=${s[k]};`;
    return out;
  }

  /** The states without repeats (the first of each), as the map of their keys. */
  private uniq(ss: NsState[]): NsState[] {
    const m = new Map<string, NsState>();
    for (const s of ss) {
      const k = this.keyOf(s);
      if (!m.has(k)) m.set(k, s);
    }
    return [...m.values()];
  }

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
      if (!this.lossy)
        this.violations.push(
          `S4 app${this.owner} ${op.kind} ${op.a}${op.kind === 'rename' ? ` -> ${op.b}` : ''} ${op.outcome === 'ok' ? 'succeeded' : 'failed with ENOENT'} at ${op.t0.toFixed(2)}, impossible in every state its own earlier operations left: ${before.map(key).join(' | ')}`,
        );
      after = before; // go on checking from the states before
    }
    this.states = this.uniq(after).slice(0, 256);
    this.ops.push({ ...op, mid, after: this.states });
    this.busySince = null;
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

/** A read or listing waiting for the operations of the owners it overlapped to end. */
interface Pending {
  t1: number;
  owners: number[];
  check: () => void;
}

/** The owners' models, and the reads and listings of their names checked as soon as they can be. */
export class OwnNames {
  readonly models: NsModel[];
  readonly ownerOf: Map<string, number>;
  readonly all: string[];
  private pending: Pending[] = [];

  constructor(names: string[][], violations: string[]) {
    this.models = names.map((ns, k) => new NsModel(k, ns, violations));
    this.ownerOf = new Map(names.flatMap((ns, k) => ns.map((n) => [n, k] as const)));
    this.all = names.flat();
  }

  /** The owner `k` begins an operation on its names at `t0`. */
  begins(k: number, t0: number): void {
    this.models[k].busySince = t0;
  }

  /** A check of a read or listing that returned at `t1`, run once the owners named are past `t1`. */
  defer(t1: number, owners: number[], check: () => void): void {
    this.pending.push({ t1, owners, check });
  }

  /** After every event: the checks whose owners have no operation begun at or before their read's return. */
  flush(): void {
    if (this.pending.length === 0) return;
    const ready = (p: Pending) =>
      p.owners.every((k) => {
        const b = this.models[k].busySince;
        return b === null || b > p.t1;
      });
    const keep: Pending[] = [];
    for (const p of this.pending) {
      if (ready(p)) p.check();
      else keep.push(p);
    }
    this.pending = keep;
  }

  /** At the end (every operation over): whatever is left. */
  finish(): void {
    for (const p of this.pending.splice(0)) p.check();
  }
}
