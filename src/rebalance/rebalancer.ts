/**
 * The rebalancer: a client of the bricks that walks the volume's directories in a fixed order, gives
 * each directory a layout over the current bricks that moves the least data (fixLayout), and migrates
 * the files whose hashed brick changed, with the safe protocol (migrate.ts). Its progress is saved
 * through a CheckpointStore after every directory, so a stopped or crashed run resumes where it was.
 */
import { FsError, codeOf, ignoreCodes, bestEffort, nullOnFailure } from '../common/errors.js';
import { needGfid, newGfid } from '../common/gfid.js';
import { joinPath, latestTimes, type DhtClient } from '../dht/client.js';
import { checkLayout, fixLayout, isEmptyRange, movedShare, rangesOf, searchLayout, COMMIT_HASH_INVALID, type Layout } from '../dht/layout.js';
import { dhtHash } from '../dht/hash.js';
import type { Attr, DirEntryAttr } from '../wire/types.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../storage/storage.js';

/** Names with no data of their own, moved by remaking them (migration/special.ts). */
const SPECIAL = new Set([S_IFLNK, S_IFIFO, S_IFSOCK, S_IFBLK, S_IFCHR]);
import { migrateSpecial } from '../migration/special.js';
import { SwitchGate, migrateFile, type MigrateOptions } from '../migration/migrator.js';
import { migrateFileLegacy } from '../migration/legacy.js';

export type RebalanceMode = 'full' | 'fix-layout';
export type RebalanceState = 'running' | 'completed' | 'stopped' | 'failed';

export interface Counters {
  scanned: number;
  migrated: number;
  skipped: number;
  failed: number;
  bytes: number;
  dirs: number;
  /**
   * What this run will move, estimated by a first pass over the tree before it moves anything (the
   * layout each directory will get, applied to what each brick holds): names, and the bytes their data
   * holds (allocated bytes: holes are not copied).
   */
  totalFiles?: number;
  totalBytes: number;
  /** Directories removed while the walk was on its way to them (skipped, logged). */
  dirsGone?: number;
}

export interface Checkpoint {
  runId: string;
  mode: RebalanceMode;
  force: boolean;
  /** The directory being processed when the checkpoint was written; earlier ones (DFS order) are done. */
  position: string | null;
  counters: Counters;
  commitHash: number;
  startedAt: number;
  elapsedMs: number;
  state: RebalanceState;
  error?: string;
  topologyVersion: number;
  /** The first pass (the estimate of what will move) is under way; and how long it took. */
  estimating?: boolean;
  estimateMs?: number;
  /** The run failed before it began (a brick down at start): a new start begins afresh. */
  notBegun?: boolean;
}

/** A checkpoint for a run that could not begin: shown as failed, with its reason, not as the last run's end. */
export function startFailed(prev: Checkpoint | null, mode: RebalanceMode, force: boolean, error: string, now: number, runId: string): Checkpoint {
  const resumable = prev && !prev.notBegun && (prev.state === 'running' || prev.state === 'stopped' || prev.state === 'failed') && prev.mode === mode;
  if (resumable) return { ...prev, state: 'failed', error };
  return { runId, mode, force, position: null, counters: zero(), commitHash: COMMIT_HASH_INVALID, startedAt: now, elapsedMs: 0, state: 'failed', error, topologyVersion: 0, notBegun: true };
}

export interface CheckpointStore {
  load(): Checkpoint | null;
  save(c: Checkpoint): void;
}

export interface RebalanceOptions {
  mode?: RebalanceMode;
  /** Bypass the fuller-to-emptier rule (GlusterFS's `force`; remove-brick uses it). */
  force?: boolean;
  /** Parallel migrations: lazy 1, normal 2, aggressive 4, or a number. */
  throttle?: number;
  store: CheckpointStore;
  /** Start over even if a checkpoint says a run was under way. */
  restart?: boolean;
  migrate?: MigrateOptions;
  /** Polled between files: true asks the run to stop at the next checkpoint. */
  shouldStop?: () => boolean;
  onProgress?: (c: Checkpoint) => void;
  log?: (msg: string) => void;
}

export const THROTTLE: Record<string, number> = { lazy: 1, normal: 2, aggressive: 4 };

const zero = (): Counters => ({ scanned: 0, migrated: 0, skipped: 0, failed: 0, bytes: 0, dirs: 0, totalFiles: 0, totalBytes: 0 });

/** One name to move: a regular file's data (the migration protocol), or a special file's name. */
interface Work {
  path: string;
  from: string;
  to: string;
  size: number;
  special?: boolean;
  /** A file with several names: all of them (the data moves once, to `to`). */
  links?: string[];
}

/** A directory that is not there (any more): removed, or its name now a file's. */
const gone = (e: unknown) => codeOf(e) === 'ENOENT' || codeOf(e) === 'ENOTDIR';

/** DFS order of directory paths: a directory comes before its children, siblings by name. */
export function dfsBefore(a: string, b: string): boolean {
  const x = a === '/' ? [] : a.slice(1).split('/');
  const y = b === '/' ? [] : b.slice(1).split('/');
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return Buffer.compare(Buffer.from(x[i]), Buffer.from(y[i])) < 0;
  }
  return x.length < y.length;
}

export class Rebalancer {
  private cp!: Checkpoint;
  private lastSave = 0;
  private stopping = false;

  /** While one file switches, the other migrations hold their bulk copying (migrate.ts). */
  private readonly gate = new SwitchGate();

  constructor(
    private readonly c: DhtClient,
    private readonly o: RebalanceOptions,
  ) {}

  private log(m: string): void {
    this.o.log?.(m);
  }

  private save(force = false): void {
    const now = this.c.clock.now();
    if (!force && now - this.lastSave < 500) return;
    this.lastSave = now;
    this.cp.elapsedMs = this.c.clock.wallNow() - this.cp.startedAt;
    this.o.store.save(this.cp);
    this.o.onProgress?.(this.cp);
  }

  async run(): Promise<Checkpoint> {
    const prev = this.o.store.load();
    const mode = this.o.mode ?? 'full';
    const resume = !this.o.restart && prev && !prev.notBegun && (prev.state === 'running' || prev.state === 'stopped' || prev.state === 'failed') && prev.mode === mode;
    try {
      await this.c.refreshTopology(true);
      if (resume) {
        this.cp = { ...prev, state: 'running', error: undefined, startedAt: this.c.clock.wallNow() - prev.elapsedMs };
        this.log(`resuming rebalance ${prev.runId} at ${prev.position ?? '/'}`);
      } else {
        // A new run: a new volume commit hash, so clients look everywhere until each directory is settled.
        const commitHash = ((this.c.random.int(0x7fffffff) << 1) | 1) >>> 0;
        this.cp = {
          runId: newGfid(this.c.random),
          mode,
          force: !!this.o.force,
          position: null,
          counters: zero(),
          commitHash,
          startedAt: this.c.clock.wallNow(),
          elapsedMs: 0,
          state: 'running',
          topologyVersion: this.c.topologyVersion,
        };
        if (mode === 'full') {
          await Promise.all(this.c.names.map((n) => this.c.sv(n).call('setCommitHash', { value: commitHash })));
          this.c.volCommitHash = commitHash;
        }
      }
    } catch (e) {
      // Died before it began (a brick down at start): this run failed, and says why; the previous run's
      // end is not this one's.
      const error = (e as Error)?.message ?? String(e);
      this.cp = startFailed(prev, mode, !!this.o.force, error, this.c.clock.wallNow(), newGfid(this.c.random));
      this.log(`rebalance failed: ${error}`);
      this.save(true);
      return this.cp;
    }
    this.save(true);
    try {
      // A new run estimates what it will move; so does one resumed from a stop during its estimate.
      if ((!resume || prev?.estimating) && mode === 'full') await this.estimate();
      await this.walk('/');
      // Files with several names whose names the walk did not all meet off their draining brick (some
      // outside the tree walked, or the run resumed past them): left, and said so.
      for (const g of this.linkGroups.values()) for (const p of g.names) this.notMoved(p, g.from, g.nlink);
      this.linkGroups.clear();
      this.cp.state = this.stopping ? 'stopped' : 'completed';
      if (!this.stopping) {
        this.cp.position = null;
        // Every committed copy met on the way was installed: what is left in the copy areas is garbage.
        const olderThanMs = Math.max(0, Math.floor(this.c.clock.wallNow() - this.cp.startedAt));
        for (const n of this.c.names) await this.c.sv(n).call('migSweep', { olderThanMs }).catch(bestEffort('migSweep', this.c.log));
      }
    } catch (e) {
      this.cp.state = 'failed';
      this.cp.estimating = undefined;
      this.cp.error = (e as Error)?.message ?? String(e);
      this.log(`rebalance failed: ${this.cp.error}`);
    }
    this.save(true);
    return this.cp;
  }

  /**
   * The first pass: what this run will move. For each directory, the layout the run will give it (the
   * same fixLayout over the same bricks) applied to what each brick holds: every name away from its new
   * hashed brick, and its data's allocated bytes. Lists each directory once per brick, moves nothing.
   */
  private async estimate(): Promise<void> {
    const began = this.c.clock.now();
    this.cp.estimating = true;
    this.save(true);
    const weights = await this.c.brickWeights();
    let files = 0;
    let bytes = 0;
    const visit = async (dir: string): Promise<void> => {
      if (this.wantStop()) return;
      const rs = await this.c.all('lookup', { path: dir });
      const layout: Layout = [];
      for (const r of rs) {
        if (r.err && !gone(r.err)) throw r.err;
        const ranges = r.value?.layout && r.value.layout.length > 0 ? r.value.layout : [{ commit: 0, type: 0, start: 0, stop: 0 }];
        for (const x of ranges) layout.push({ brick: r.brick, ...x });
      }
      if (rs.every((r) => !r.value || (r.value.mode & S_IFMT) !== S_IFDIR)) return; // removed meanwhile
      const fixed = fixLayout(layout, weights, { commit: COMMIT_HASH_INVALID, weighted: this.c.spec.options?.weightedRebalance, dir });
      const subdirs = new Set<string>();
      for (const brick of this.c.names) {
        let entries: DirEntryAttr[];
        try {
          entries = await this.listBrick(brick, dir);
        } catch (e) {
          if (gone(e)) continue;
          throw e;
        }
        for (const e of entries) {
          const type = e.attr.mode & S_IFMT;
          if (type === S_IFDIR) {
            subdirs.add(e.name);
            continue;
          }
          if (e.attr.linkto !== undefined || e.attr.moved) continue;
          const to = searchLayout(fixed, dhtHash(e.name));
          if (!to || to === brick) continue;
          files++;
          if (type === S_IFREG && e.attr.nlink <= 1) bytes += e.attr.blocks > 0 ? Math.min(e.attr.size, e.attr.blocks * 512) : e.attr.size;
        }
      }
      for (const name of [...subdirs].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) await visit(joinPath(dir, name));
    };
    await visit('/');
    if (this.stopping) return; // still `estimating`: a resumed run estimates again
    this.cp.counters.totalFiles = files;
    this.cp.counters.totalBytes = bytes;
    this.cp.estimating = undefined;
    this.cp.estimateMs = Math.round(this.c.clock.now() - began);
    this.log(`estimate: ${files} names to move, ${bytes} bytes of data`);
    this.save(true);
  }

  private wantStop(): boolean {
    if (!this.stopping && this.o.shouldStop?.()) {
      this.stopping = true;
      this.log('stop requested: finishing the migrations under way');
    }
    return this.stopping;
  }

  /** Directories in DFS order; the checkpoint's position and everything after it are (re)done. */
  private async walk(dir: string): Promise<void> {
    if (this.wantStop()) return;
    const pos = this.cp.position;
    const done = pos !== null && dfsBefore(dir, pos); // pre-order: ancestors of the position are done too
    let subdirs: string[];
    try {
      if (!done) {
        this.cp.position = dir;
        this.save(true);
        subdirs = await this.processDir(dir);
        this.cp.counters.dirs++;
      } else subdirs = await this.subdirsOf(dir);
    } catch (e) {
      // Removed (or replaced by a file) while the walk was on its way to it or in it: nothing of it is
      // left to move. The run goes on with the rest of the tree.
      if (!gone(e)) throw e;
      this.cp.counters.dirsGone = (this.cp.counters.dirsGone ?? 0) + 1;
      this.log(`skipped directory ${dir}: removed during the walk (${codeOf(e)})`);
      return;
    }
    if (this.wantStop()) return;
    for (const name of subdirs) {
      await this.walk(joinPath(dir, name));
      if (this.stopping) return;
    }
  }

  /**
   * The names of a directory's subdirectories, listed from every brick (a directory is on all of them).
   * Not through the client's merged listing: its lookup of the directory would heal a copy that a
   * client's rmdir has just removed.
   */
  private async subdirsOf(dir: string): Promise<string[]> {
    const names = new Set<string>();
    let listed = false;
    for (const brick of this.c.names) {
      try {
        for (const e of await this.listBrick(brick, dir)) if ((e.attr.mode & S_IFMT) === S_IFDIR) names.add(e.name);
        listed = true;
      } catch (e) {
        if (!gone(e)) throw e;
      }
    }
    if (!listed) throw new FsError('ENOENT', `${dir}: no such directory`);
    return [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }

  /**
   * A directory's layout as its copies hold it, read from every brick, healing nothing: a copy missing
   * now (healDir made them all) means a client is removing the directory (ENOENT).
   */
  private async readLayout(dir: string): Promise<Layout> {
    const rs = await this.c.all('lookup', { path: dir });
    const layout: Layout = [];
    for (const r of rs) {
      if (r.err) throw r.err;
      if ((r.value!.mode & S_IFMT) !== S_IFDIR) throw new FsError('ENOTDIR', `${dir}: not a directory`);
      const ranges = r.value!.layout && r.value!.layout.length > 0 ? r.value!.layout : [{ commit: 0, type: 0, start: 0, stop: 0 }];
      for (const x of ranges) layout.push({ brick: r.brick, ...x });
    }
    return layout;
  }

  /** One directory: its layout fixed, its files moved, then settled. Returns its subdirectories' names. */
  private async processDir(dir: string): Promise<string[]> {
    const layout = await this.fixDirLayout(dir);
    if (this.cp.mode === 'fix-layout') return this.subdirsOf(dir);
    this.leftBehind = 0;
    await this.migrateDir(dir, layout);
    // Before the directory is settled (lookups trust its layout for an absence), every subdirectory is on
    // every brick: a subdirectory whose name hashes to a new brick would be missed there otherwise.
    const subdirs = await this.subdirsOf(dir);
    for (const name of subdirs) {
      await this.healDir(joinPath(dir, name)).catch((e) => {
        if (!gone(e)) throw e; // removed meanwhile: the walk skips it
      });
    }
    if (this.leftBehind > 0) {
      // A file that failed to move or was skipped may be left away from its hashed brick with no linkto
      // there: a settled layout would let lookups answer ENOENT for it (sim seed 12099 with --names
      // --errors). As GlusterFS does, such a directory is not settled; lookups keep looking everywhere.
      this.log(`left ${dir} unsettled: ${this.leftBehind} file(s) not moved`);
      return subdirs;
    }
    // Settle: the directory's layout now carries the run's commit hash; lookups may trust it again.
    await Promise.all(this.c.names.map((n) => this.c.sv(n).call('setLayout', { path: dir, layout: rangesOf(layout, n).map((r) => ({ ...r, commit: this.cp.commitHash })) })));
    this.c.invalidate(dir);
    return subdirs;
  }

  /** Gives the directory a layout over the active bricks that moves the least data. */
  private async fixDirLayout(dir: string): Promise<Layout> {
    const weights = await this.c.brickWeights();
    await this.healDir(dir); // creates the directory on bricks that lack it (new ones), so all can be locked
    return this.c.withLayoutLock(dir, async () => {
      this.c.invalidate(dir);
      const d = { layout: await this.readLayout(dir) }; // read fresh under the lock
      const fixed = fixLayout(d.layout, weights, { commit: COMMIT_HASH_INVALID, weighted: this.c.spec.options?.weightedRebalance, dir });
      const same = movedShare(d.layout, fixed) === 0 && this.c.names.every((n) => rangesOf(d.layout, n).length === rangesOf(fixed, n).length);
      if (!same || this.cp.mode === 'full') {
        await Promise.all(this.c.names.map((n) => this.c.sv(n).call('setLayout', { path: dir, layout: rangesOf(fixed, n) })));
        await this.keepNewCopiesTimes(dir, d.layout, fixed);
        this.c.invalidate(dir);
      }
      return fixed;
    });
  }

  /**
   * Makes the directory on the bricks that lack it: new bricks, and bricks that missed its mkdir (down
   * then, or a power loss took the copy). Skipped, a drained brick's names in such a directory stayed
   * there, lost at the commit (the simulator's seeds 132, 139 and 247 with --names --errors). The client
   * heals under the directory's namespace lock, which a client's rmdir holds through all its steps, and
   * looks again under it: a directory being removed is not brought back (seed 47), and one removed
   * meanwhile answers ENOENT, which the walk skips.
   */
  private async healDir(path: string): Promise<void> {
    const rs = await this.c.all('lookup', { path });
    const present = rs.filter((r) => r.value);
    for (const r of rs) if (r.err && !gone(r.err)) throw r.err;
    if (present.length === 0) throw new FsError('ENOENT', `${path}: no such directory`);
    if (present.some((r) => (r.value!.mode & S_IFMT) !== S_IFDIR)) throw new FsError('ENOTDIR', `${path}: not a directory`);
    const missing = rs.filter((r) => !r.value).map((r) => r.brick);
    if (missing.length === 0) return;
    const a = present[0].value!;
    if (!(await this.c.healMissingDir(path, needGfid(a.gfid, path), a, missing))) throw new FsError('ENOENT', `${path}: being removed`);
    this.c.invalidate(path);
  }

  /**
   * A directory's copy on a brick that had no range in it and holds no name (a new brick's: its root
   * above all, made when the brick was) takes the times of the directory's other copies: making it
   * was no change of the directory a user made, and the volume shows a directory's copies' latest times.
   */
  private async keepNewCopiesTimes(dir: string, before: Layout, after: Layout): Promise<void> {
    const isNew = (n: string) => rangesOf(before, n).every(isEmptyRange) && !rangesOf(after, n).every(isEmptyRange);
    const fresh = this.c.names.filter(isNew);
    if (fresh.length === 0) return;
    const rs = await this.c.all('lookup', { path: dir });
    const others = rs.filter((r) => r.value && !fresh.includes(r.brick)).map((r) => r.value!);
    if (others.length === 0) return;
    const { atime, mtime } = latestTimes(others[0], others);
    for (const n of fresh) {
      const listed = await this.c.sv(n).call('readdir', { path: dir, offset: 0, limit: 1 }).catch(nullOnFailure('readdir', this.c.log));
      if (!listed || listed.entries.length > 0) continue;
      await this.c.sv(n).call('setattr', { path: dir, atime, mtime }).catch(bestEffort('setattr', this.c.log));
    }
  }

  private async listBrick(brick: string, dir: string): Promise<DirEntryAttr[]> {
    const out: DirEntryAttr[] = [];
    for (let offset = 0; ; offset += 1000) {
      const r = await this.c.sv(brick).call('readdir', { path: dir, offset, limit: 1000 });
      out.push(...r.entries);
      if (r.eof || r.entries.length === 0) return out;
    }
  }

  private async migrateDir(dir: string, layout: Layout): Promise<void> {
    const work: Work[] = [];
    for (const brick of this.c.names) {
      let entries: DirEntryAttr[];
      try {
        entries = await this.listBrick(brick, dir);
      } catch (e) {
        if (codeOf(e) === 'ENOENT') continue;
        throw e;
      }
      for (const e of entries) {
        if ((e.attr.mode & S_IFMT) === S_IFDIR) continue;
        const path = joinPath(dir, e.name);
        if (e.attr.linkto !== undefined) {
          // A linkto is of use only on the name's hashed brick (and never on a draining one).
          if (this.c.decommissioned.has(brick) || searchLayout(layout, dhtHash(e.name)) !== brick) {
            await this.c
              .sv(brick)
              .call('unlink', { path, onlyIfLinkto: true, ifNotOpen: true, gfid: e.attr.gfid ?? undefined, keepTimes: true })
              .catch(bestEffort('unlink', this.c.log));
          }
          continue;
        }
        this.cp.counters.scanned++;
        let a = e.attr;
        if (a.renaming) {
          // A rename its renamer left unfinished: settled now (one of the file's two names goes), then the
          // name is taken as it is left, if it is left.
          await this.c.settleRename({ path, attr: a, cached: brick, hashed: null, isDir: false });
          const again = await this.c.sv(brick).call('lookup', { path }).catch(nullOnFailure('lookup', this.c.log));
          if (!again || again.renaming) continue;
          a = again;
        }
        if (a.moved && a.gfid) {
          // A committed migration of an earlier run: make sure dst's copy is installed (durably, before the
          // commit record that points at the copy goes), then drop src's. If the copy can never be installed
          // (the file was renamed over, renamed or unlinked since), the record is stale and goes too.
          await this.c.settleMove(path, a.gfid, a.moved, brick).catch(nullOnFailure('settleMove', this.c.log));
          continue;
        }
        const to = searchLayout(layout, dhtHash(e.name));
        if (!to || to === brick) continue;
        if (a.nlink > 1 && a.gfid && (a.mode & S_IFMT) === S_IFREG) {
          // Possibly an interrupted rename's extra name: removed if the name reaches another file.
          if (await this.c.removeUnreachableName(path, brick, a.gfid).catch(() => false)) continue;
        } else if (a.gfid && (await this.holdsOther(to, path, brick, a.gfid))) {
          // Possibly the data of a file a rename replaced, left behind: removed if the name reaches another file.
          if (await this.c.removeUnreachableName(path, brick, a.gfid, true).catch(() => false)) continue;
        }
        const type = a.mode & S_IFMT;
        if (a.nlink > 1 && a.gfid) {
          // A file with several names stays where its data is: each name reachable through a linkto on its
          // hashed brick, as DHT places any name away from its hashed brick. Off a draining brick it
          // moves (GlusterFS moves hard links on remove-brick only), once the walk has met all its names:
          // the data once, to the first name's hashed brick, every name given its place there.
          await this.keepReachable(path, brick, to, a, layout, false);
          if (this.c.decommissioned.has(brick) && (type === S_IFREG || SPECIAL.has(type))) {
            const g = this.linkGroups.get(a.gfid) ?? { from: brick, to, names: new Set<string>(), nlink: a.nlink };
            this.linkGroups.set(a.gfid, g);
            g.names.add(path);
            if (g.names.size >= a.nlink) {
              this.linkGroups.delete(a.gfid);
              work.push({ path, from: brick, to: g.to, size: a.size, links: [...g.names], special: type !== S_IFREG });
            }
          } else this.notMoved(path, brick, a.nlink);
          continue;
        }
        if (SPECIAL.has(type)) {
          work.push({ path, from: brick, to, size: 0, special: true });
          continue;
        }
        if (type !== S_IFREG) {
          this.cp.counters.skipped++;
          this.log(`skipped ${path}: a ${(type >> 12).toString(8)} file type that does not migrate`);
          continue;
        }
        work.push({ path, from: brick, to, size: a.size });
      }
    }
    await this.runWork(work);
  }

  /**
   * Whether the name's hashed brick `to` holds another file at `path` than `gfid` on `brick`: its data, or
   * a linkto to a third brick (one lookup; usually it holds nothing there, or a linkto to `brick`).
   */
  private async holdsOther(to: string, path: string, brick: string, gfid: string): Promise<boolean> {
    const there = await this.c.sv(to).call('lookup', { path }).catch(nullOnFailure('lookup', this.c.log));
    return !!there && there.gfid !== gfid && (there.linkto === undefined || there.linkto !== brick);
  }

  private async runWork(work: Work[]): Promise<void> {
    const width = Math.max(1, this.o.throttle ?? THROTTLE.normal);
    let next = 0;
    const worker = async () => {
      while (next < work.length && !this.wantStop()) {
        const w = work[next++];
        await this.migrateOne(w);
        this.save();
      }
    };
    await Promise.all(Array.from({ length: Math.min(width, work.length) }, worker));
  }

  /** Files of the directory being processed that failed to move or were skipped: it is not settled. */
  private leftBehind = 0;

  private async migrateSpecialOne(w: Work): Promise<void> {
    try {
      const r = await migrateSpecial(this.c, w.path, w.from, w.to, w.links);
      if (r.result === 'migrated') this.cp.counters.migrated++;
      else if (r.result === 'skipped') {
        this.cp.counters.skipped++;
        this.leftBehind++;
        this.log(`skipped ${w.path}: ${r.reason}`);
      }
    } catch (e) {
      this.leftBehind++;
      this.cp.counters.failed++;
      this.log(`failed to migrate ${w.path}: ${(e as Error)?.message}`);
      if (codeOf(e) === 'ENOTCONN') throw e;
    }
  }

  /** GlusterFS's space rules: the target must stay above min-free-disk; without force, fuller to emptier only. */
  private async spaceAllows(from: string, to: string, size: number): Promise<string | null> {
    const [s, d] = await Promise.all([this.c.statfsOf(from), this.c.statfsOf(to)]);
    const dTotal = d.blocks * d.bsize;
    const dAvail = d.bavail * d.bsize - size;
    if (dAvail < 0) return `no room for ${size} bytes on ${to}`;
    if (await this.c.isFilled(to)) return `${to} is past min-free-disk`;
    // Fuller to emptier only (GlusterFS's rule, which it checks after reserving the file on dst and
    // without crediting src). Bricks on one filesystem gain nothing from each other: the rule is moot.
    const sameFs = s.blocks === d.blocks && s.files === d.files && s.bsize === d.bsize;
    if (!this.cp.force && !this.c.decommissioned.has(from) && !sameFs) {
      const srcPct = (s.bavail * s.bsize * 100) / (s.blocks * s.bsize);
      const dstPct = (dAvail * 100) / dTotal;
      if (dstPct < srcPct) return `would leave ${to} with less free space than ${from}`;
    }
    return null;
  }

  /**
   * A name that is not moved (a file with several names) stays where it is, reachable: its hashed
   * brick gets a linkto to the brick holding it if it has none (or one to elsewhere), under the
   * parent's layout as a precondition. Counted as skipped and logged, so that nothing is left silently.
   */
  private async keepReachable(path: string, from: string, to: string, a: Attr, layout: Layout, log = true): Promise<void> {
    const there = await this.c
      .sv(to)
      .call('lookup', { path })
      .catch((e) => {
        if (codeOf(e) === 'ENOENT') return null;
        throw e;
      });
    let how = 'through its linkto';
    if (there && (there.linkto === undefined || there.gfid !== a.gfid)) how = `not through ${to}, which holds another file at the name`;
    else if (!there || there.linkto !== from) {
      await this.c.sv(to).call('mklinkto', { path, gfid: needGfid(a.gfid, path), target: from, uid: a.uid, gid: a.gid, parentLayout: rangesOf(layout, to), keepTimes: true, replace: !!there });
      how = `through a new linkto on ${to}`;
    }
    if (log) this.log(`${path} stays on ${from}, reachable ${how}`);
    else if (how !== 'through its linkto') this.log(`${path} reachable ${how}`);
  }

  /** Files with several names met on the way off a draining brick, until all their names are met. */
  private readonly linkGroups = new Map<string, { from: string; to: string; names: Set<string>; nlink: number }>();

  private notMoved(path: string, from: string, nlink: number): void {
    this.cp.counters.skipped++;
    this.log(`not moved ${path}: ${nlink} names (hard links) stay on ${from}, each reachable through a linkto on its hashed brick`);
  }

  private async migrateOne(w: Work): Promise<void> {
    if (w.special) return this.migrateSpecialOne(w);
    try {
      const why = await this.spaceAllows(w.from, w.to, w.size);
      if (why) {
        this.cp.counters.skipped++;
        this.leftBehind++;
        this.log(`skipped ${w.path}: ${why}`);
        return;
      }
      const onBytes = (n: number) => {
        this.cp.counters.bytes += n;
        this.o.migrate?.onBytes?.(n);
      };
      // The volume's protocol: GlusterFS's order only where clients follow GlusterFS's rules.
      const r =
        this.c.spec.options?.migrationProtocol === 'legacy'
          ? await migrateFileLegacy(this.c, w.path, { onBytes })
          : await migrateFile(this.c, w.path, { gate: this.gate, ...this.o.migrate, onBytes, ...(w.links ? { links: w.links, dst: w.to } : {}) });
      if (r.result === 'migrated') this.cp.counters.migrated++;
      else if (r.result === 'skipped') {
        this.cp.counters.skipped++;
        this.leftBehind++;
        this.log(`skipped ${w.path}: ${r.reason}`);
      }
    } catch (e) {
      const code = codeOf(e);
      if (code === 'ENOENT' || code === 'ESTALE') return; // removed or renamed meanwhile
      this.leftBehind++;
      if (code === 'EBUSY') {
        // Another migration of the file is live, or its local writes did not end in time: a later run moves it.
        this.cp.counters.skipped++;
        this.log(`skipped ${w.path}: ${(e as Error)?.message}`);
        return;
      }
      this.cp.counters.failed++;
      this.log(`failed to migrate ${w.path}: ${(e as Error)?.message}`);
      if (code === 'ENOTCONN') throw e; // a brick is down: stop the run, as GlusterFS does
    }
  }
}
