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
/**
 * A state inside a model: the token of each of the owner's names, in key() order, ABSENT for a name
 * that is not there (an array of a fixed shape: the states are many after operations of unknown outcome).
 */
type Vals = number[];
const ABSENT = -1;
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
  mid: Vals[];
  /** The possible states after it. */
  after: Vals[];
}

/** A state's identity: its names in order with their tokens (a hot path: no JSON, no array sort). */
export const key = (s: NsState) => {
  let out = '';
  for (const k of Object.keys(s).sort()) out += `${k}=${s[k]};`;
  return out;
};

/** A copy of `s` with name `i` set to `v`. */
function withVal(s: Vals, i: number, v: number): Vals {
  const n = s.slice();
  n[i] = v;
  return n;
}

/** The operation applied to one state (`ia`, `ib`: its names' places); null when it fails with ENOENT there. */
function applyNs(s: Vals, kind: NsKind, ia: number, ib: number, token: number): Vals | null {
  if (kind === 'put') return withVal(s, ia, token);
  if (s[ia] === ABSENT) return null;
  if (kind === 'trunc') return withVal(s, ia, 0);
  const n = withVal(s, ia, ABSENT);
  if (kind === 'rename') n[ib] = s[ia];
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
  /** The owner's names in key() order, and each one's place in a state. */
  private readonly sorted: string[];
  private readonly place: Map<string, number>;
  private states: Vals[];
  /** A power loss may have taken back some of the owner's changes: operations are no longer checked. */
  lossy = false;
  /** When the owner's operation in progress began (null: none): reads overlapping it wait for its end. */
  busySince: number | null = null;
  constructor(
    readonly owner: number,
    readonly names: string[],
    private readonly violations: string[],
  ) {
    this.sorted = [...names].sort();
    this.place = new Map(this.sorted.map((n, i) => [n, i]));
    this.states = [this.sorted.map(() => ABSENT)];
  }

  /** A state as names and tokens. */
  private named(s: Vals): NsState {
    const out: NsState = {};
    this.sorted.forEach((n, i) => {
      if (s[i] !== ABSENT) out[n] = s[i];
    });
    return out;
  }

  /** The states without repeats, each where it first came. */
  private uniq(ss: Vals[]): Vals[] {
    const m = new Map<string, Vals>();
    for (const s of ss) {
      const k = s.join();
      if (!m.has(k)) m.set(k, s);
    }
    return [...m.values()];
  }

  /** Records a finished operation; returns false when its result fits no possible state. */
  record(op: Omit<NsOp, 'mid' | 'after'>): void {
    const ia = this.place.get(op.a)!;
    const ib = this.place.get(op.b)!;
    const before = this.states;
    const applied = before.map((s) => applyNs(s, op.kind, ia, ib, op.token));
    let after: Vals[];
    if (op.outcome === 'ok') after = applied.filter((s): s is Vals => s !== null);
    else if (op.outcome === 'ENOENT') after = before.filter((_, i) => applied[i] === null);
    else {
      // Not known whether it happened. A put may have truncated without writing; a rename interrupted
      // between its steps may leave the file under both names (never under neither: nothing is lost).
      const partial = op.kind === 'put' ? before.map((s) => withVal(s, ia, 0)) : op.kind === 'rename' ? before.filter((s) => s[ia] !== ABSENT).map((s) => withVal(s, ib, s[ia])) : [];
      after = [...before, ...applied.filter((s): s is Vals => s !== null), ...partial];
    }
    const mid = op.kind === 'put' ? before.map((s) => withVal(s, ia, 0)) : [];
    if (after.length === 0) {
      if (!this.lossy)
        this.violations.push(
          `S4 app${this.owner} ${op.kind} ${op.a}${op.kind === 'rename' ? ` -> ${op.b}` : ''} ${op.outcome === 'ok' ? 'succeeded' : 'failed with ENOENT'} at ${op.t0.toFixed(2)}, impossible in every state its own earlier operations left: ${before.map((s) => key(this.named(s))).join(' | ')}`,
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
    const i = this.place.get(name);
    const add = (ss: Vals[]) => {
      for (const s of ss) out.add(i === undefined || s[i] === ABSENT ? null : s[i]);
    };
    if (j0 < 0) out.add(null);
    else add(this.ops[j0].after);
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
    return this.states.map((s) => this.named(s));
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
