/**
 * The brick's half of the safe migration protocol (docs/MIGRATION.md), as src: leases with tokens,
 * tracking of writes during the copy, the freeze that holds writes for the final copy, and the record of
 * files whose commit this brick made. Pure state and rules; the brick's ops (src/brick/ops/mig-src.ts)
 * do the storage work around it.
 */
import assert from 'node:assert';
import { EMOVED, FsError } from '../common/errors.js';
import type { Clock, Random, Timer } from '../common/env.js';
import { planted } from '../common/plant.js';
import type { DirtyRecord, Moved } from '../wire/types.js';
import { EFENCED } from './records.js';

export type { DirtyRecord, Moved };

interface Active {
  token: string;
  session: number;
  dst: string;
  path: string;
  timer: Timer;
  dirty: [number, number][];
  attrs: boolean;
  frozen: boolean;
  /** The commit's xattr is being made durable: not moved yet for anyone. */
  committing: boolean;
  drained: (() => void)[];
  held: (() => void)[];
  /** A file with several names: all of them (brick paths), as the lease found them. */
  links?: string[];
}

export type MigLog = (msg: string) => void;

/** Merges [start, end) into a sorted list of disjoint ranges. */
export function addRange(list: [number, number][], start: number, end: number): void {
  if (end <= start) return;
  let s = start;
  let e = end;
  const out: [number, number][] = [];
  let placed = false;
  for (const [a, b] of list) {
    if (b < s) out.push([a, b]);
    else if (a > e) {
      if (!placed) {
        out.push([s, e]);
        placed = true;
      }
      out.push([a, b]);
    } else {
      s = Math.min(s, a);
      e = Math.max(e, b);
    }
  }
  if (!placed) out.push([s, e]);
  list.length = 0;
  list.push(...out);
}

export class SrcMigrations {
  private active = new Map<string, Active>();
  private moved = new Map<string, Moved>();
  /** Changes in flight per file, migration or not: one that began before a lease ends inside it. */
  private inflight = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly log: MigLog,
    /** A migration of the file ended, committed or aborted (after its record is durable, if committed). */
    private readonly ended: (gfid: string) => void = () => {},
  ) {}

  /** step `lease`: one live migration per file. */
  lease(gfid: string, session: number, dst: string, path: string, leaseMs: number, links?: string[]): string {
    if (this.moved.has(gfid)) throw new FsError(EMOVED, 'file already migrated', { ...this.moved.get(gfid) });
    if (this.active.has(gfid)) throw new FsError('EBUSY', `file ${gfid} is being migrated`);
    const token = Buffer.from(this.random.bytes(8)).toString('hex');
    const a: Active = {
      token,
      session,
      dst,
      path,
      timer: this.clock.setTimer(leaseMs, () => this.abort(gfid, token, 'lease expired')),
      dirty: [],
      attrs: false,
      frozen: false,
      committing: false,
      drained: [],
      held: [],
      links,
    };
    this.active.set(gfid, a);
    return token;
  }

  /** The file's names (brick paths) as its lease found them: its path, or all of them given with it. */
  namesOf(gfid: string, token: string): string[] {
    const a = this.check(gfid, token);
    return a.links ?? [a.path.replace(/^\/+/, '')];
  }

  private check(gfid: string, token: string): Active {
    const a = this.active.get(gfid);
    if (!a || a.token !== token) throw new FsError(EFENCED, `no live migration lease ${token} on ${gfid}`);
    return a;
  }

  /** Throws EFENCED unless the lease `token` on the file is live. */
  holds(gfid: string, token: string): void {
    this.check(gfid, token);
  }

  renew(gfid: string, token: string, leaseMs: number): void {
    const a = this.check(gfid, token);
    a.timer.cancel();
    a.timer = this.clock.setTimer(leaseMs, () => this.abort(gfid, token, 'lease expired'));
  }

  /** step `recopy`: fetch and clear what was changed since the last fetch. */
  takeDirty(gfid: string, token: string): DirtyRecord {
    const a = this.check(gfid, token);
    const r = { ranges: a.dirty, attrs: a.attrs };
    a.dirty = [];
    a.attrs = false;
    return r;
  }

  /** step `freeze`: hold new changes, wait for those in flight, return the last record. */
  async freeze(gfid: string, token: string): Promise<DirtyRecord> {
    const a = this.check(gfid, token);
    a.frozen = true;
    if ((this.inflight.get(gfid) ?? 0) > 0) await new Promise<void>((r) => a.drained.push(r));
    return this.takeDirty(gfid, token);
  }

  /** step `commit`, first half: checks the lease; the brick then makes the record durable. */
  beginCommit(gfid: string, token: string): Moved {
    const a = this.check(gfid, token);
    if (!a.frozen) throw new FsError('EINVAL', 'commit before freeze');
    a.committing = true;
    return { dst: a.dst, token, path: a.path };
  }

  /** step `commit`, second half: the record is durable; the file is dst's now. */
  endCommit(gfid: string, token: string): Moved {
    const a = this.check(gfid, token);
    a.timer.cancel();
    this.active.delete(gfid);
    const m = { dst: a.dst, token, path: a.path };
    this.moved.set(gfid, m);
    this.ended(gfid);
    for (const h of a.held.splice(0)) h();
    return m;
  }

  /** The commit could not be made durable: back to frozen, the migrator may retry or abort. */
  failCommit(gfid: string): void {
    const a = this.active.get(gfid);
    if (a) a.committing = false;
  }

  /** Drops a migration that has not committed: held changes go on at src. */
  abort(gfid: string, token: string | null, why: string): void {
    const a = this.active.get(gfid);
    if (!a || (token !== null && a.token !== token) || a.committing) return;
    a.timer.cancel();
    this.active.delete(gfid);
    this.log(`migration of ${gfid} aborted: ${why}`);
    this.ended(gfid);
    for (const h of a.held.splice(0)) h();
    for (const d of a.drained.splice(0)) d();
  }

  /** The migrator's connection closed. */
  sessionClosed(session: number): void {
    for (const [gfid, a] of [...this.active]) if (a.session === session) this.abort(gfid, a.token, 'migrator disconnected');
  }

  /** A file removed or renamed at src: a migration that has not committed is void. */
  entryChanged(gfid: string | null): void {
    if (gfid) this.abort(gfid, null, 'file renamed or removed');
  }

  /** Learnt from the xattr after a restart. */
  rememberMoved(gfid: string, m: Moved): void {
    if (!this.active.get(gfid)?.committing) this.moved.set(gfid, m);
  }

  forgetMoved(gfid: string): void {
    this.moved.delete(gfid);
  }

  movedTo(gfid: string | null): Moved | null {
    return gfid ? (this.moved.get(gfid) ?? null) : null;
  }

  /** Whether a commit record on disk is not yet in force (its fsync is in progress). */
  committing(gfid: string): boolean {
    return this.active.get(gfid)?.committing ?? false;
  }

  /**
   * While a commit is being made durable (it can no longer be aborted), a rename or unlink of the file
   * waits for its outcome: otherwise the record would land on a name that no longer is the file's.
   */
  whenSettled(gfid: string | null): Promise<void> | null {
    const a = gfid ? this.active.get(gfid) : undefined;
    if (!a?.committing) return null;
    return new Promise<void>((r) => a.held.push(r));
  }

  /** Reads of a moved file are refused. */
  checkRead(gfid: string | null): void {
    if (planted.has('read-ignores-moved')) return;
    const m = this.movedTo(gfid);
    if (m) throw new FsError(EMOVED, 'file was migrated', { ...m });
  }

  /**
   * Before a change to a file (write, truncate, attributes): refused if moved, held while frozen,
   * otherwise counted in flight. Returns a Promise to wait on (then call again), or a finish function.
   */
  enter(gfid: string | null): Promise<void> | ((range: [number, number] | null) => void) {
    const m = this.movedTo(gfid);
    if (m) throw new FsError(EMOVED, 'file was migrated', { ...m });
    if (!gfid) return () => {};
    const a = this.active.get(gfid);
    const atEnter = a;
    if (a?.frozen) return new Promise<void>((r) => a.held.push(r));
    this.inflight.set(gfid, (this.inflight.get(gfid) ?? 0) + 1);
    let exited = false;
    return (range) => {
      // Every enter is paired with exactly one exit (change() calls it once, on success or failure).
      assert.ok(!exited, `a tracked change of ${gfid} exited twice`);
      exited = true;
      // Recorded in the migration live when the change is done, even if it began before the lease.
      const cur = planted.has('track-at-enter') ? atEnter : this.active.get(gfid);
      if (cur) {
        if (range) addRange(cur.dirty, range[0], range[1]);
        else cur.attrs = true;
      }
      const n = (this.inflight.get(gfid) ?? 0) - 1;
      assert.ok(n >= 0, `changes in flight of ${gfid} below zero`);
      if (n > 0) this.inflight.set(gfid, n);
      else {
        this.inflight.delete(gfid);
        if (cur) for (const d of cur.drained.splice(0)) d();
      }
    };
  }

  isActive(gfid: string): boolean {
    return this.active.has(gfid);
  }
}
