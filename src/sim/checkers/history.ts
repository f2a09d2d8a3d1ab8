/**
 * S1 (no stale read) and S2 (no lost write) over the fixed files' regions: each client's reads, writes,
 * truncates and fsyncs, ordered by vector clocks (a client's own order, and notifications between
 * clients: the seed timeline's happened-before edges). A read may not return a write that another write,
 * known to have happened before the read, overwrote; nor a value never written there. A read is checked
 * the moment it completes, against the writes and power losses known then; the final reads of every
 * region (client -1) check S2. Writes that failed (their outcome unknown) and writes not yet fsynced when
 * a power loss hit may be missing: they never count as overwriters and are never required.
 */

/** A vector clock: one count per client. */
export type VC = number[];

export interface Op {
  id: number;
  /** The client (-1: the final reads). */
  client: number;
  kind: 'write' | 'read' | 'fsync';
  file: number;
  /** A region of the file, or `regions` for its size (a truncate writes it). */
  region: number;
  token: number;
  issue: VC;
  ack: VC | null;
  /** Virtual time of issue and ack. */
  t0: number;
  t1: number;
  failed: boolean;
}

export function fmt(op: Op): string {
  return `app${op.client} ${op.kind} f${op.file}[${op.region}] at ${op.t0.toFixed(2)}`;
}

/** hb: a completed operation of client c with ack vector `ack` happened before an operation issued at `issue`. */
function hb(a: Op, issue: VC): boolean {
  return a.ack !== null && a.client >= 0 && a.ack[a.client] <= issue[a.client];
}

export class HistoryChecker {
  readonly ops: Op[] = [];
  /** Writes (and truncates) by file and region, and fsyncs by file. */
  private writes = new Map<string, Op[]>();
  private fsyncs = new Map<number, Op[]>();
  private byToken = new Map<number, Op>();
  readonly powerLosses: number[] = [];

  constructor(private readonly violations: string[]) {}

  /** An operation is issued (its fields filled in as it completes). */
  issued(op: Op): void {
    this.ops.push(op);
    if (op.kind === 'write') {
      const k = `${op.file}:${op.region}`;
      let l = this.writes.get(k);
      if (!l) this.writes.set(k, (l = []));
      l.push(op);
      this.byToken.set(op.token, op);
    } else if (op.kind === 'fsync') {
      let l = this.fsyncs.get(op.file);
      if (!l) this.fsyncs.set(op.file, (l = []));
      l.push(op);
    }
  }

  powerLoss(t: number): void {
    this.powerLosses.push(t);
  }

  /** An operation completed (acked or failed): a read is checked now. */
  completed(op: Op): void {
    if (op.kind === 'read' && !op.failed && op.ack !== null) this.checkRead(op);
  }

  private checkRead(r: Op): void {
    const v = this.violations;
    const ack = r.ack!;
    const fsyncs = (this.fsyncs.get(r.file) ?? []).filter((s) => !s.failed && s.ack);
    const durable = (wr: Op) => fsyncs.some((s) => s.t0 >= wr.t1);
    const certain = (wr: Op) => !wr.failed && wr.ack !== null && !this.powerLosses.some((t) => t >= wr.t1 && !fsyncs.some((s) => s.t0 >= wr.t1 && s.t1 <= t));
    const before = (this.writes.get(`${r.file}:${r.region}`) ?? []).filter((x) => certain(x) && hb(x, r.issue));
    const got = r.token === 0 ? null : this.byToken.get(r.token);
    if (r.token !== 0 && (!got || got.file !== r.file || got.region !== r.region)) {
      v.push(`S1 ${r.client >= 0 ? fmt(r) : 'final read'} returned ${r.token}, which was never written there`);
      return;
    }
    if (got && got.client >= 0 && got.issue[got.client] >= ack[got.client] && got.client === r.client && got.id > r.id) {
      v.push(`S1 ${fmt(r)} returned a write issued after it`);
    }
    // A write that happened before the read and is newer (hb) than what the read returned.
    const newer = before.find((x) => (got ? x !== got && hb(got, x.issue) : true));
    if (newer) {
      const what = r.client >= 0 ? fmt(r) : `final read of f${r.file}[${r.region}]`;
      v.push(`${r.client >= 0 ? 'S1 stale read' : 'S2 lost write'}: ${what} returned ${r.token} but write ${newer.token} (app${newer.client}, acked ${newer.t1.toFixed(2)}${durable(newer) ? ', fsynced' : ''}) happened before it`);
    }
  }
}
