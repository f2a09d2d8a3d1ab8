/**
 * The DHT client: places and finds files on bricks by hashing names into per-directory layouts, as
 * GlusterFS's distribute translator does (shared/reference/glusterfs-dht.md §1, §2). Talks to bricks
 * through RpcClient over an injected Network; time and randomness are injected too.
 */
import type { ArgsOf, FdArgs, FdOp, OpName, Reply } from '../wire/ops.js';
import { ELAYOUT, EMOVED, FsError, codeOf, infoOf, ignoreCodes, bestEffort, nullOnFailure, rethrowBug } from '../common/errors.js';
import type { Clock, Random, Timer } from '../common/env.js';
import { needGfid, newGfid } from '../common/gfid.js';
import type { Network } from '../wire/transport.js';
import { DIR_CHANGED, TOPOLOGY_CHANGED, type Attr, type DirChanged, type DirEntryAttr, type Moved, type StatFsReply } from '../wire/types.js';
import { O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC, S_IFDIR, S_IFMT } from '../storage/storage.js';
import { dhtHash, type HashOptions } from './hash.js';
import { COMMIT_HASH_INVALID, checkLayout, layoutCommit, newLayout, rangesOf, searchLayout, type Layout, type LayoutRange } from './layout.js';
import { Subvol } from './subvol.js';
import { joinPath, normPath, splitPath, walkPath } from './paths.js';
import * as renames from './rename.js';
import { NegativeCache } from './neg-cache.js';
import { DirCache, type DirInfo } from './dir-cache.js';
import { liveOptionsIn, validateTopology, type LiveOptions, type Topology, type VolumeSpec } from './spec.js';
import { installMoved, settleMove } from '../migration/client-rules.js';

export { joinPath, normPath, walkPath } from './paths.js';
export { Subvol };
export type { DirInfo };

export const DOMAIN_LAYOUT = 'dht.layout.heal';
export const DOMAIN_ENTRY = 'dht.entry.sync';
const STATFS_TTL_MS = 1000;
const LAYOUT_RETRIES = 4;
/** How often dir() heals a layout with holes or overlaps (or reads the topology again) and reads it again. */
const DIR_REREADS = 3;
/**
 * A negative lookup answered from the cache (neg-cache.ts) needs an answer from every brick
 * within this long: a connection that went silent may have lost the news of a name made since. The same
 * bound as the FUSE mount's names (its entry timeout).
 */
const NEG_FRESH_MS = 1000;
/** How long a stat of a directory waits for its copies' times on the bricks other than its own. */
const DIR_TIMES_WAIT_MS = 500;
/** The longest name, in bytes (Linux's NAME_MAX; bricks refuse longer ones too). */
const NAME_MAX = 255;

export type Logger = (level: 'info' | 'warn' | 'error', msg: string) => void;

/**
 * How many times an operation that met a race (a migration, an unlink or a rename between its lookup and
 * its call; another client's create) is tried again before the race's error stands.
 */
export const RACE_RETRIES = 3;

/** Errors that say a brick is out of reach, not what it holds: the brick is taken for down. */
export function brickUnreachable(e: unknown): boolean {
  return ['ENOTCONN', 'ETIMEDOUT', 'ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'EPIPE'].includes(codeOf(e));
}

/** An fd and the connection it was opened on (see Subvol.call). */
export interface BrickFd {
  brick: string;
  fd: number;
  generation: number;
}

/** Whether an error says an fd's connection is gone (the fd must be opened again). */
export function fdGone(e: unknown): boolean {
  return (infoOf(e) as { fdGone?: boolean } | undefined)?.fdGone === true;
}

/** Where a name's data lives. */
export interface Located {
  path: string;
  attr: Attr;
  /** The brick holding the data (or, for directories, the name's hashed brick). */
  cached: string;
  /** The brick the name hashes to in its parent's layout (null for the root). */
  hashed: string | null;
  isDir: boolean;
}

export interface OpenResult {
  located: Located;
  fd: number;
  attr: Attr;
}

const isDirAttr = (a: Attr) => (a.mode & S_IFMT) === S_IFDIR;
const later = (x: [number, number], y: [number, number]): [number, number] => (y[0] > x[0] || (y[0] === x[0] && y[1] > x[1]) ? y : x);

/**
 * A directory's attributes: `base`'s, with the latest times of all its copies (`copies`), as GlusterFS
 * merges them: a name made or removed on any brick moves the directory's times, and only such a change
 * does (the bricks keep a directory's times where a migration or a repair changes its entries).
 */
export function latestTimes(base: Attr, copies: Attr[]): Attr {
  const out = { ...base };
  for (const c of copies) {
    out.atime = later(out.atime, c.atime);
    out.mtime = later(out.mtime, c.mtime);
    out.ctime = later(out.ctime, c.ctime);
  }
  return out;
}

export interface DhtClientOptions {
  clientName?: string;
  log?: Logger;
  /** The negative-lookup cache (neg-cache.ts); false: every lookup asks the bricks. */
  negativeCache?: boolean;
  /** The directory and layout cache (dir-cache.ts); false: layouts are read from the bricks each time. */
  dirCache?: boolean;
}

export class DhtClient {
  readonly subvols = new Map<string, Subvol>();
  /** Bricks of the volume, in topology order; decommissioned ones included. */
  names: string[];
  /** Bricks an earlier topology had and the current one has not (see sv). */
  private readonly removed = new Set<string>();
  /** Connections to bricks that left the volume, closed once their calls in flight end (Subvol.retire). */
  private readonly retired = new Set<Subvol>();
  /** Bricks being drained: no hash range in new or fixed layouts, no new files. */
  decommissioned = new Set<string>();
  topologyVersion = 0;
  private topoCheckedAt = -Infinity;
  readonly clientName: string;
  /** Directories' layouts, and paths seen to be directories (dir-cache.ts). */
  readonly dirs: DirCache;
  /** Negative lookups: the directories this client made and the names that may be in them (neg-cache.ts). */
  readonly neg: NegativeCache;
  private hashOpts: HashOptions;
  volCommitHash: number = COMMIT_HASH_INVALID;
  private lockSeq = 0;
  /** Directories whose namespace lock this client's rmdir or rename holds: not healed meanwhile. */
  private readonly removing = new Map<string, number>();
  readonly log: Logger;
  /** The options in force (the spec's, then each topology's: `volume set`). */
  private live: Required<LiveOptions>;
  private downListeners: ((brick: string) => void)[] = [];

  constructor(
    readonly spec: VolumeSpec,
    readonly net: Network,
    readonly clock: Clock,
    readonly random: Random,
    opts: DhtClientOptions = {},
  ) {
    this.clientName = opts.clientName ?? `client-${Buffer.from(random.bytes(4)).toString('hex')}`;
    this.log = opts.log ?? (() => {});
    this.dirs = new DirCache(clock, opts.dirCache !== false);
    this.neg = new NegativeCache(() => this.allHeardWithin(NEG_FRESH_MS), opts.negativeCache !== false);
    for (const b of spec.bricks) this.subvols.set(b.name, new Subvol(b.name, b.host, b.port, this));
    this.names = spec.bricks.map((b) => b.name);
    this.decommissioned = new Set(spec.decommissioned ?? []);
    this.topologyVersion = spec.version ?? 0;
    const o = spec.options ?? {};
    this.hashOpts = {
      rsyncHashRegex: o.rsyncHashRegex === undefined ? undefined : o.rsyncHashRegex === null ? null : new RegExp(o.rsyncHashRegex),
      extraHashRegex: o.extraHashRegex ? new RegExp(o.extraHashRegex) : null,
    };
    this.live = liveOptionsIn(o);
  }

  // --- connection and root -------------------------------------------------------------------------
  /** Connects to every brick, reads the volume commit hash and heals the root layout if needed. */
  async connect(): Promise<void> {
    await this.refreshTopology(true);
    const infos = await this.all('rootInfo', {});
    const down = infos.filter((r) => r.err);
    if (down.length > 0) {
      const e = down[0].err!;
      if (codeOf(e) === 'EACCES') throw e;
      this.log('warn', `bricks down at connect: ${down.map((d) => d.brick).join(', ')}`);
    }
    const hashes = infos.map((r) => r.value?.commitHash).filter((h): h is number => typeof h === 'number');
    if (hashes.length > 0) this.volCommitHash = hashes[0];
    if (hashes.length === 0 || hashes.length < infos.length - down.length || hashes.some((h) => h !== hashes[0])) await this.initCommitHash();
    const root = await this.dir('/');
    if (this.needsHeal(root)) await this.healDirLayout('/');
  }

  private async initCommitHash(): Promise<void> {
    await this.withLayoutLock('/', async () => {
      const infos = await this.all('rootInfo', {});
      const existing = infos.map((r) => r.value?.commitHash).find((h) => typeof h === 'number');
      const value = existing ?? ((this.random.int(0x7fffffff) << 1) | 1) >>> 0;
      // Bricks that lack it get it; one with another value (a rebalance cut short) keeps it unless this
      // client is the volume's admin (an ordinary one may not change it: EPERM), until the next rebalance.
      await this.everywhere('setCommitHash', { value }).catch((e) => {
        ignoreCodes(e, 'EPERM');
        this.log('warn', `the bricks' commit hashes differ and only the volume's admin may set them: using ${value}`);
      });
      this.volCommitHash = value;
    });
  }

  /**
   * Reads the topology the bricks keep (add-brick and remove-brick write it to every brick) and adopts
   * a newer one. Returns whether anything changed. At most every 300 ms unless forced.
   */
  async refreshTopology(force = false): Promise<boolean> {
    const now = this.clock.now();
    if (!force && now - this.topoCheckedAt < 300) return false;
    this.topoCheckedAt = now;
    const rs = await this.all('getTopology', {});
    let best: Topology | null = null;
    for (const r of rs) {
      if (!r.value?.topology) continue;
      try {
        const t = validateTopology(r.value.topology);
        if (!best || t.version > best.version) best = t;
      } catch {
        /* a brick with a damaged record */
      }
    }
    if (!best || best.version <= this.topologyVersion) return false;
    this.adoptTopology(best);
    return true;
  }

  adoptTopology(t: Topology): void {
    const keep = new Set(t.bricks.map((b) => b.name));
    for (const [n, sv] of [...this.subvols]) {
      const nb = t.bricks.find((b) => b.name === n);
      if (!keep.has(n) || (nb && (nb.host !== sv.host || nb.port !== sv.port))) {
        if (keep.has(n)) sv.close();
        else {
          sv.retire(); // new calls to it fail with ESTALE (see sv)
          this.retired.add(sv);
        }
        this.subvols.delete(n);
        if (!keep.has(n)) this.removed.add(n);
      }
    }
    for (const b of t.bricks) if (!this.subvols.has(b.name)) this.subvols.set(b.name, new Subvol(b.name, b.host, b.port, this));
    for (const b of t.bricks) this.removed.delete(b.name);
    this.names = t.bricks.map((b) => b.name);
    this.decommissioned = new Set(t.decommissioned);
    this.topologyVersion = t.version;
    if (t.options) this.live = { ...this.live, ...t.options };
    this.dirs.clear();
    this.neg.clear(); // new bricks watch nothing for us
    this.log('info', `topology version ${t.version}: ${this.names.join(', ')}${t.decommissioned.length ? ` (draining ${t.decommissioned.join(', ')})` : ''}`);
  }

  /** The options in force in this client now. */
  liveOptions(): Required<LiveOptions> {
    return { ...this.live };
  }

  /** Milliseconds (0: never); see Subvol.watch. */
  get pingTimeoutMs(): number {
    return this.live.pingTimeout * 1000;
  }

  /** Bricks that take new ranges and new files. */
  activeBricks(): string[] {
    return this.names.filter((n) => !this.decommissioned.has(n));
  }

  onBrickDown(name: string): void {
    this.neg.clear(); // the brick forgot our watches with the connection
    for (const f of this.downListeners) f(name);
  }

  /** An event brick `sv` sent (brick/watch.ts): a cache to drop, then the acknowledgement the brick waits for. */
  onBrickEvent(sv: Subvol, kind: string, payload: unknown): void {
    if (kind === TOPOLOGY_CHANGED) {
      // New bricks or options (add-brick, remove-brick, volume set): read them now.
      this.refreshTopology(true).catch((e) => this.log('warn', `topology refresh after ${sv.name}'s news failed: ${(e as Error).message}`));
      return;
    }
    if (kind !== DIR_CHANGED) return;
    const p = payload as Partial<DirChanged> | null;
    if (!p || typeof p.path !== 'string') this.neg.clear();
    else if (p.subtree) this.neg.gone(p.path);
    else this.neg.changed(p.path);
    if (typeof p?.id === 'number') sv.call('watchAck', { id: p.id }).catch(bestEffort('watchAck', this.log));
  }

  /** Whether every brick answered within `ms` (the negative-lookup cache's answers need it). */
  private allHeardWithin(ms: number): boolean {
    const now = this.clock.now();
    for (const n of this.names) {
      const sv = this.subvols.get(n);
      if (!sv || now - sv.heard > ms) return false;
    }
    return true;
  }

  /** This client is about to make the name `path` (in any way): lookups of it must ask. */
  mayExist(path: string): void {
    const { parent, name } = splitPath(path);
    this.neg.mayExist(parent, name);
  }

  onDown(fn: (brick: string) => void): void {
    this.downListeners.push(fn);
  }

  close(): void {
    for (const s of this.subvols.values()) s.close();
    for (const s of this.retired) s.close();
    this.retired.clear();
  }

  /** Binds an fd `brick` has just returned to the connection it came on. */
  fdOn(brick: string, fd: number): BrickFd {
    return { brick, fd, generation: this.sv(brick).generation };
  }

  /** An operation on an fd, refused if the fd's connection is gone. */
  fdCall<N extends FdOp>(f: BrickFd, op: N, args: FdArgs<N>, into?: Uint8Array): Promise<Reply<N>> {
    return this.sv(f.brick).call(op, { fd: f.fd, ...args } as ArgsOf<N>, into, f.generation);
  }

  sv(name: string): Subvol {
    const s = this.subvols.get(name);
    // A brick removed from the volume (remove-brick commit) while a lookup that found a file there was on
    // its way: the file is not where the lookup found it any more (ESTALE: callers look it up again).
    if (!s && this.removed.has(name)) throw new FsError('ESTALE', `brick ${name} left the volume`);
    if (!s) throw new FsError('EIO', `unknown brick ${name}`);
    return s;
  }

  /** Calls every brick; never throws, reports per-brick results. */
  async all<N extends OpName>(op: N, args: ArgsOf<N>): Promise<{ brick: string; value?: Reply<N>; err?: FsError }[]> {
    return Promise.all(
      this.names.map((n) =>
        this.sv(n)
          .call(op, args)
          .then(
            (value) => ({ brick: n, value }),
            (err: FsError) => ({ brick: n, err }),
          ),
      ),
    );
  }

  /** Calls every brick; throws the first error. */
  private async everywhere<N extends OpName>(op: N, args: ArgsOf<N>): Promise<Reply<N>[]> {
    const rs = await this.all(op, args);
    const bad = rs.find((r) => r.err);
    if (bad) throw bad.err;
    return rs.map((r) => r.value!);
  }

  private owner(): string {
    return `${this.clientName}:${++this.lockSeq}`;
  }

  /** The layout write lock: write inodelk on every brick in name order (GlusterFS's ordering). */
  async withLayoutLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
    const owner = this.owner();
    const order = [...this.names].sort();
    const held: string[] = [];
    try {
      for (const n of order) {
        await this.sv(n).call('inodelk', { domain: DOMAIN_LAYOUT, path, type: 'wr', block: true, owner });
        held.push(n);
      }
      return await fn();
    } finally {
      for (const n of held.reverse()) {
        await this.sv(n).call('inodelk', { domain: DOMAIN_LAYOUT, path, type: 'un', owner }).catch(bestEffort('inodelk', this.log));
      }
    }
  }

  // --- directories and layouts ---------------------------------------------------------------------
  invalidate(path: string): void {
    this.dirs.drop(path);
  }

  invalidateTree(path: string): void {
    this.dirs.dropTree(path);
  }

  /**
   * The directory's merged layout, from cache or from all bricks. A layout with holes or overlaps is
   * healed (or the topology read again) and read once more, at most DIR_REREADS times: a layout a heal
   * cannot make whole is used as it is, uncached, and logged.
   */
  async dir(path: string, rereads = 0): Promise<DirInfo> {
    const c = this.dirs.get(path);
    if (c) return c;
    const rs = await this.all('lookup', { path });
    let gfid: string | null = null;
    let attr: Attr | null = null;
    const layout: Layout = [];
    const missing: string[] = [];
    const down: string[] = [];
    for (const r of rs) {
      if (r.err) {
        const code = codeOf(r.err);
        if (code === 'ENOENT') {
          missing.push(r.brick);
          continue;
        }
        if (code === 'ENOTDIR') throw new FsError('ENOTDIR', `${path}: not a directory`);
        // One brick down costs that brick's names, not the directory (GlusterFS's distribute does the same).
        if (brickUnreachable(r.err) && rs.some((x) => !x.err)) {
          down.push(r.brick);
          continue;
        }
        throw r.err;
      }
      const a = r.value!;
      if (!isDirAttr(a)) throw new FsError('ENOTDIR', `${path}: not a directory`);
      gfid ??= a.gfid;
      attr = attr ? latestTimes(attr, [a]) : a;
      const ranges = a.layout && a.layout.length > 0 ? a.layout : [{ commit: 0, type: 0, start: 0, stop: 0 }];
      for (const range of ranges) layout.push({ brick: r.brick, ...range });
    }
    if (!attr || !gfid) {
      if (down.length > 0) throw new FsError('ENOTCONN', `${path}: not on the bricks that answer (down: ${down.join(', ')})`);
      throw new FsError('ENOENT', `${path}: no such directory`);
    }
    if (down.length > 0) {
      // Nothing is healed or cached from a partial view: the down bricks' ranges are not known.
      this.log('warn', `${path}: bricks down: ${down.join(', ')}; their names answer ENOTCONN`);
      return { path, gfid, layout, attr, down };
    }
    if (missing.length > 0) {
      if (missing.length === this.names.length) throw new FsError('ENOENT', `${path}: no such directory`);
      // A copy that cannot be made now costs nothing but the cache: the directory is on the other bricks,
      // and the missing ones held no range of it (a brick added since it was made).
      let healed: boolean;
      try {
        healed = await this.healMissingDir(path, gfid, attr, missing);
      } catch (e) {
        // Removed meanwhile (an rmdir held its namespace lock): gone, as a lookup after it finds it.
        if (codeOf(e) === 'ENOENT' && (e as FsError).info?.removed) throw e;
        this.log('warn', `${path}: could not make its copy on ${missing.join(', ')}: ${(e as Error).message}`);
        healed = false;
      }
      for (const m of missing) layout.push({ brick: m, commit: 0, type: 0, start: 0, stop: 0 });
      if (!healed) return { path, gfid, layout, attr, missing };
    }
    // Attributes of record: the directory's hashed brick, as GlusterFS's MDS.
    const info: DirInfo = { path, gfid, layout, attr };
    if (this.needsHeal(info)) {
      if (rereads >= DIR_REREADS) {
        this.log('warn', `${path}: the layout still has holes or overlaps after ${rereads} heals; used as it is`);
        return info;
      }
      // A hole may be a brick this client does not know yet (added since it connected).
      if (await this.refreshTopology()) return this.dir(path, rereads + 1);
      if (path !== '/') {
        await this.healDirLayout(path);
        return this.dir(path, rereads + 1);
      }
      // The root's ranges read while a fix-layout rewrote them brick by brick: read again, and never
      // cache a hole (every name under it would answer EIO until the cache let it go).
      return this.dir(path, rereads + 1);
    }
    this.dirs.set(path, info);
    return info;
  }

  private needsHeal(d: DirInfo): boolean {
    if (d.down?.length) return false; // a brick that did not answer holds its own ranges
    const a = checkLayout(d.layout);
    return a.holes > 0 || a.overlaps > 0;
  }

  /**
   * A directory's attributes as a stat shows them: `a` (from `from`, its hashed brick; null: none), with
   * the latest times of its copies on the other bricks (latestTimes), as `asked` (askOthers, started
   * early where the path was known to be a directory) or a new ask brings them.
   */
  private async dirAttr(path: string, from: string | null, a: Attr, asked?: Promise<(Attr | null)[]>): Promise<Attr> {
    const rs = await (asked ?? this.askOthers(path, from));
    const copies = rs.filter((r): r is Attr => r !== null && isDirAttr(r) && (from === null || r.gfid === a.gfid));
    return latestTimes(from === null && copies.length > 0 ? copies[0] : a, copies);
  }

  /**
   * Looks `path` up on every brick but `from`; null where a brick fails, or does not answer within
   * DIR_TIMES_WAIT_MS (a hung brick: calls have no timeout) rather than hold up every stat of a directory.
   */
  private async askOthers(path: string, from: string | null): Promise<(Attr | null)[]> {
    const others = this.names.filter((n) => n !== from);
    const rs: (Attr | null)[] = others.map(() => null);
    const asks = others.map((n, i) =>
      this.sv(n)
        .call('lookup', { path })
        .then(
          (r) => void (rs[i] = r),
          () => {},
        ),
    );
    let timer: Timer | undefined;
    await Promise.race([Promise.all(asks), new Promise<void>((done) => (timer = this.clock.setTimer(DIR_TIMES_WAIT_MS, done)))]);
    timer?.cancel();
    return rs;
  }

  /**
   * A directory missing on some bricks (one was down at mkdir, or a brick is new): create it there, no
   * range, with the directory's times, and keeping its parent's (no name a user made or removed).
   */
  /**
   * Heals under the directory's namespace lock (withNamespaceLock), which mkdir and rmdir hold too, and
   * looks at the copies again under it: a heal never brings back copies that an rmdir removed (between
   * two of its steps a directory is on some bricks only), nor makes copies of a directory that a mkdir is
   * still making. Returns false, healing nothing, while this client's own rmdir removes it (it holds the
   * lock); throws ENOENT with `info.removed` if no copy of the directory (this gfid) is left.
   */
  async healMissingDir(path: string, gfid: string, attr: Attr, bricks: string[]): Promise<boolean> {
    if (path === '/') {
      await this.makeMissingDir(path, gfid, attr, bricks);
      return true;
    }
    if (this.removing.has(path)) return false;
    await this.withNamespaceLock(path, async () => {
      const rs = await this.all('lookup', { path });
      if (!rs.some((r) => r.value && isDirAttr(r.value) && r.value.gfid === gfid)) throw new FsError('ENOENT', `${path}: removed meanwhile`, { removed: true });
      const missing = rs.filter((r) => r.err && codeOf(r.err) === 'ENOENT').map((r) => r.brick);
      if (missing.length > 0) await this.makeMissingDir(path, gfid, attr, missing);
    });
    return true;
  }

  /**
   * A directory's namespace lock: the write entry lock on its name in its parent, on the brick the name
   * hashes to there (GlusterFS's dht_protect_namespace). mkdir, rmdir and the heal of a directory's
   * missing copies take it, so each sees the others' outcomes whole.
   */
  async withNamespaceLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
    const { parent, name } = splitPath(path);
    return this.entryLock(this.hashedBrick(await this.dir(parent), name), parent, name, fn);
  }

  /** Makes a directory's copies on `bricks` (see healMissingDir; the caller holds the namespace lock). */
  private async makeMissingDir(path: string, gfid: string, attr: Attr, bricks: string[]): Promise<void> {
    this.log('info', `healing directory ${path} onto ${bricks.join(', ')}`);
    const make = (b: string) =>
      this.sv(b)
        .call('mkdir', { path, mode: attr.mode & 0o7777, gfid, uid: attr.uid, gid: attr.gid, layout: null, atime: attr.atime, mtime: attr.mtime, keepTimes: true })
        .catch((e) => {
          ignoreCodes(e, 'EEXIST');
        });
    await Promise.all(
      bricks.map((b) =>
        make(b).catch(async (e: unknown) => {
          // Its parent is missing there too (a brick added since, not yet fix-layouted): the parent's
          // copies first (dir() heals them, and so on up), then this one. Before, a lookup below such a
          // directory failed with ENOENT for the parent until a fix-layout had made it.
          if (codeOf(e) !== 'ENOENT' || path === '/') throw e;
          const { parent } = splitPath(path);
          this.dirs.drop(parent);
          await this.dir(parent);
          await make(b);
        }),
      ),
    );
  }

  async brickWeights(): Promise<{ name: string; weight: number }[]> {
    const out: { name: string; weight: number }[] = [];
    for (const n of this.activeBricks()) {
      const s = await this.statfsOf(n).catch(nullOnFailure('statfsOf', this.log));
      out.push({ name: n, weight: s ? Math.ceil((s.blocks * s.bsize) / (1024 * 1024)) : 0 });
    }
    return out;
  }

  /** Computes and writes a whole new layout for a directory with holes or overlaps. */
  async healDirLayout(path: string): Promise<void> {
    await this.withLayoutLock(path, async () => {
      this.dirs.drop(path);
      const rs = await this.everywhere('lookup', { path });
      const cur: Layout = rs.flatMap((a, i) => (a.layout ?? []).map((r) => ({ brick: this.names[i], ...r })));
      const an = checkLayout(cur);
      if (an.holes === 0 && an.overlaps === 0) return;
      // If it replaces ranges, never settled: names placed under them may sit anywhere until a rebalance
      // has been through the directory, so lookups must look everywhere on a miss until then. A directory
      // with no range anywhere (a new volume's root) can hold no file placed by hash.
      const replaces = cur.some((r) => r.stop > r.start);
      const l = newLayout(await this.brickWeights(), path, { commit: replaces ? COMMIT_HASH_INVALID : this.volCommitHash, weighted: this.spec.options?.weightedRebalance, hash: this.hashOpts });
      this.log('info', `writing a new layout for ${path}`);
      await Promise.all(this.names.map((n) => this.sv(n).call('setLayout', { path, layout: rangesOf(l, n) })));
    });
  }

  hashedBrick(d: DirInfo, name: string): string {
    const b = searchLayout(d.layout, dhtHash(name, this.hashOpts));
    if (!b && d.down?.length) throw new FsError('ENOTCONN', `${joinPath(d.path, name)}: its brick is down (one of ${d.down.join(', ')})`);
    if (!b) throw new FsError('EIO', `layout of ${d.path} has a hole at ${name}`);
    return b;
  }

  rangeOf(d: DirInfo, brick: string): LayoutRange[] {
    return rangesOf(d.layout, brick);
  }

  /** Runs an entry operation; on a stale parent layout, refreshes it and tries again. */
  async withParent<T>(parent: string, fn: (d: DirInfo) => Promise<T>): Promise<T> {
    for (let i = 0; ; i++) {
      const d = await this.dir(parent);
      try {
        return await fn(d);
      } catch (e) {
        if (codeOf(e) !== ELAYOUT || i >= LAYOUT_RETRIES) throw e;
        this.log('info', `stale layout of ${parent}; refreshing`);
        this.dirs.drop(parent);
      }
    }
  }

  // --- lookup ----------------------------------------------------------------------------------------
  private shouldLookupEverywhere(d: DirInfo): boolean {
    if (!this.live.lookupOptimize) return true;
    return layoutCommit(d.layout) !== this.volCommitHash || this.volCommitHash === COMMIT_HASH_INVALID;
  }

  /** The parent's layout changed under us: forget it, and learn the volume's commit hash again. */
  private async parentChanged(parent: string, hashed: string): Promise<void> {
    this.dirs.drop(parent);
    const root = await this.sv(hashed).call('rootInfo', {});
    if (root.commitHash !== null) this.volCommitHash = root.commitHash;
  }

  /**
   * Finds where a path's data lives. A file met with a rename left unfinished (its renamer cut off between
   * giving it the new name and taking the old one away) has that rename settled first (settleRename), so
   * that no one goes on seeing the file under both names.
   */
  async locate(path: string): Promise<Located> {
    for (let i = 0; ; i++) {
      const loc = await this.locateOnce(path);
      if (!loc.attr.renaming || i >= 2 || !(await this.settleRename(loc))) return loc;
    }
  }

  private async locateOnce(path: string, revalidated = false): Promise<Located> {
    path = normPath(path);
    if (path === '/') {
      const d = await this.dir('/');
      return { path, attr: await this.dirAttr(path, null, d.attr), cached: this.names[0], hashed: null, isDir: true };
    }
    const { parent, name } = splitPath(path);
    // As a local file system answers, before any cache can say ENOENT (the brick says the same).
    if (Buffer.byteLength(name) > NAME_MAX) throw new FsError('ENAMETOOLONG', `${path}: a name is longer than ${NAME_MAX} bytes`);
    if (this.neg.knownAbsent(parent, name)) throw FsError.quiet('ENOENT', `${path}: no such file or directory`);
    const d = await this.dir(parent);
    const hashed = this.hashedBrick(d, name);
    let a: Attr;
    // lookup-optimize trusts the parent's layout for an absence: the brick answers ENOENT only if our
    // view of its part of the parent's layout is still its own (else ELAYOUT: refresh, look again).
    const everywhere = this.shouldLookupEverywhere(d);
    const check = !everywhere && !revalidated ? { parentLayout: this.rangeOf(d, hashed), parentCommit: layoutCommit(d.layout) } : {};
    const asked = this.dirs.hinted(path) ? this.askOthers(path, hashed) : undefined;
    try {
      a = await this.sv(hashed).call('lookup', { path, ...check });
    } catch (e) {
      if (codeOf(e) === ELAYOUT && !revalidated) {
        await this.parentChanged(parent, hashed);
        return this.locateOnce(path, true);
      }
      ignoreCodes(e, 'ENOENT');
      if (everywhere) return this.lookupEverywhere(path, d, hashed);
      throw e;
    }
    if (isDirAttr(a)) return { path, attr: await this.dirAttr(path, hashed, a, asked), cached: hashed, hashed, isDir: true };
    if (a.moved && a.gfid) return this.finishMove(path, a.gfid, a.moved, hashed, hashed);
    if (a.linkto === undefined) return { path, attr: a, cached: hashed, hashed, isDir: false };
    // A linkto: follow it, accept only a data file with the same gfid.
    const target = a.linkto;
    if (!this.subvols.has(target)) await this.refreshTopology();
    if (this.subvols.has(target)) {
      try {
        const t = await this.sv(target).call('lookup', { path });
        if (!isDirAttr(t) && t.linkto === undefined && t.gfid === a.gfid) {
          if (t.moved && t.gfid) return this.finishMove(path, t.gfid, t.moved, hashed, target);
          return { path, attr: t, cached: target, hashed, isDir: false };
        }
      } catch (e) {
        ignoreCodes(e, 'ENOENT');
      }
    }
    return this.lookupEverywhere(path, d, hashed);
  }

  /**
   * src's brick committed a migration of this file: dst's copy is the file. Install it at the name on dst
   * (idempotent: whoever meets the commit first does it), durably, then remove the old copy holding the
   * commit record on `recordOn` (a migrator that died after its commit leaves that to whoever comes
   * next; left in place, the old copy would outlive an unlink or rename of the file).
   */
  async finishMove(path: string, gfid: string, m: Moved, hashed: string | null, recordOn: string): Promise<Located> {
    const attr = await this.settleMove(path, gfid, m, recordOn);
    if (!attr) return this.locateOnce(path, true); // the record was stale: look again
    return { path, attr, cached: m.dst, hashed, isDir: false };
  }

  /** Ends a committed migration whose record sits at `path` on `recordOn` (migration/client-rules.ts). */
  settleMove(path: string, gfid: string, m: Moved, recordOn: string): Promise<Attr | null> {
    return settleMove(this, path, gfid, m, recordOn);
  }

  /** Installs dst's copy of a committed migration (migration/client-rules.ts). */
  installMoved(gfid: string, m: Moved, durable = false): Promise<Attr> {
    return installMoved(this, gfid, m, durable);
  }

  /**
   * Looks on every brick: finds the data file, repairs a missing or wrong linkto on the hashed brick, and
   * removes stale linkto files (only if still a linkto and not open, checked by the brick).
   */
  async lookupEverywhere(path: string, d: DirInfo, hashed: string): Promise<Located> {
    const rs = await this.all('lookup', { path });
    const movedHit = rs.find((r) => r.value?.moved && r.value.gfid);
    const data = rs.filter((r) => r.value && r.value.linkto === undefined && !r.value.moved);
    const links = rs.filter((r) => r.value && r.value.linkto !== undefined);
    if (movedHit && !data.some((r) => r.value!.gfid === movedHit.value!.gfid)) {
      // Committed but not installed yet: finish it.
      return this.finishMove(path, movedHit.value!.gfid!, movedHit.value!.moved!, hashed, movedHit.brick);
    }
    if (movedHit) {
      // Installed; src's old copy is a leftover of the migration.
      await this.sv(movedHit.brick).call('migCleanup', { path, gfid: movedHit.value!.gfid! }).catch(bestEffort('migCleanup', this.log));
    }
    const dirHit = data.find((r) => isDirAttr(r.value!));
    if (dirHit)
      return {
        path,
        attr: latestTimes(
          dirHit.value!,
          data.filter((r) => isDirAttr(r.value!)).map((r) => r.value!),
        ),
        cached: dirHit.brick,
        hashed,
        isDir: true,
      };
    if (data.length > 1) this.log('warn', `multiple bricks have ${path}: ${data.map((r) => r.brick).join(', ')}`);
    const found = data.find((r) => r.brick === hashed) ?? data[0];
    for (const l of links) {
      const good = found && l.brick === hashed && l.value!.linkto === found.brick && l.value!.gfid === found.value!.gfid;
      if (good) continue;
      await this.sv(l.brick)
        .call('unlink', { path, onlyIfLinkto: true, ifNotOpen: true, gfid: l.value!.gfid ?? undefined, keepTimes: true })
        .then(
          () => this.log('info', `removed stale linkto ${path} on ${l.brick}`),
          () => {},
        );
    }
    if (!found) {
      const err = rs.find((r) => r.err && codeOf(r.err) !== 'ENOENT');
      if (err) throw err.err;
      throw new FsError('ENOENT', `${path}: no such file or directory`);
    }
    const fa = found.value!;
    if (found.brick !== hashed) {
      const hasGood = links.some((l) => l.brick === hashed && l.value!.linkto === found.brick && l.value!.gfid === fa.gfid);
      if (!hasGood && fa.gfid) {
        // With the parent's ranges as a precondition: a client with a stale layout must not put a
        // linkto on a brick that is not the name's hashed brick any more.
        await this.sv(hashed)
          .call('mklinkto', { path, gfid: fa.gfid, target: found.brick, uid: fa.uid, gid: fa.gid, parentLayout: this.rangeOf(d, hashed), keepTimes: true })
          .then(
            () => this.log('info', `recreated linkto ${path} on ${hashed} -> ${found.brick}`),
            () => {},
          );
      }
    }
    return { path, attr: fa, cached: found.brick, hashed, isDir: false };
  }

  // --- space -----------------------------------------------------------------------------------------
  async statfsOf(brick: string): Promise<StatFsReply> {
    const s = this.sv(brick);
    const now = this.clock.now();
    if (s.statfs && now - s.statfs.at < STATFS_TTL_MS) return s.statfs.v;
    const v = await s.call('statfs', {});
    s.statfs = { at: now, v };
    return v;
  }

  /** Past min-free-disk or min-free-inodes (GlusterFS's "filled"). */
  async isFilled(brick: string): Promise<boolean> {
    const s = await this.statfsOf(brick);
    const total = s.blocks * s.bsize;
    const avail = s.bavail * s.bsize;
    const { minFreeDisk, minFreeInodes } = this.live;
    const diskLow = minFreeDisk < 100 ? total > 0 && (avail * 100) / total < minFreeDisk : avail < minFreeDisk;
    const inodesLow = s.files > 0 && (s.ffree * 100) / s.files < minFreeInodes;
    return diskLow || inodesLow;
  }

  /** The brick with the most free space that is not filled (dht_free_disk_available_subvol). */
  private async mostFree(exclude: string): Promise<string | null> {
    let best: string | null = null;
    let bestAvail = -1;
    for (const n of this.activeBricks()) {
      if (n === exclude) continue;
      try {
        if (await this.isFilled(n)) continue;
        const s = await this.statfsOf(n);
        if (s.bavail * s.bsize > bestAvail) {
          best = n;
          bestAvail = s.bavail * s.bsize;
        }
      } catch (e) {
        rethrowBug(e); // a down brick is not a candidate
      }
    }
    return best;
  }

  // --- entry operations ------------------------------------------------------------------------------
  async mkdir(path: string, mode: number, owner?: { uid: number; gid: number }): Promise<Attr> {
    path = normPath(path);
    if (path === '/') throw new FsError('EEXIST', '/ exists');
    const { parent, name } = splitPath(path);
    const gfid = newGfid(this.random);
    this.mayExist(path);
    // The new directory's negative-lookup cache: in place before the first brick makes it (so that an
    // event about it is not missed), of use once every brick has made it and watches it.
    const neg = this.neg.begin(path);
    const attr = await this.withParent(parent, (d) =>
      this.entryLock(this.hashedBrick(d, name), parent, name, async () => {
        // Under the new directory's namespace lock (see healMissingDir): no heal makes copies of it (without
        // a range) before this has made them, which failed the mkdir on those bricks with EEXIST.
        const hashed = this.hashedBrick(d, name);
        const l = newLayout(await this.brickWeights(), path, { commit: this.volCommitHash, weighted: this.spec.options?.weightedRebalance, hash: this.hashOpts });
        const rangeFor = (b: string) => rangesOf(l, b);
        const base = { path, mode: mode & 0o7777, gfid, uid: owner?.uid, gid: owner?.gid, watch: true };
        const attr = await this.sv(hashed).call('mkdir', { ...base, layout: rangeFor(hashed), parentLayout: this.rangeOf(d, hashed) });
        const others = this.names.filter((n) => n !== hashed);
        const rs = await Promise.all(
          others.map((n) =>
            this.sv(n)
              .call('mkdir', { ...base, layout: rangeFor(n) })
              .then(
                () => null,
                (e: FsError) => ({ n, e }),
              ),
          ),
        );
        const failed = rs.filter((r) => r !== null);
        if (failed.length > 0) {
          // Leave no half-made directory behind if we can help it; a later lookup heals what remains.
          this.log('warn', `mkdir ${path} failed on ${failed.map((f) => f!.n).join(', ')}: ${failed[0]!.e.message}`);
          if (failed.some((f) => codeOf(f!.e) !== 'ENOTCONN')) {
            // Every brick but those out of reach, those that failed included: an error after the copy was
            // made there (an EIO on its last lstat) left it, and the directory a failed mkdir made showed up
            // later, healed everywhere (--names-strict --errors seed 46). An error is tried again.
            const undo = async (n: string) => {
              for (let i = 0; ; i++) {
                try {
                  return await this.sv(n).call('rmdir', { path });
                } catch (e) {
                  if (codeOf(e) === 'ENOENT') return;
                  if (i >= 2 || brickUnreachable(e)) return bestEffort('rmdir', this.log)(e);
                }
              }
            };
            await Promise.all(this.names.filter((n) => !failed.some((f) => f!.n === n && codeOf(f!.e) === 'ENOTCONN')).map(undo));
            throw failed[0]!.e;
          }
          return { attr, everywhere: false };
        }
        return { attr, everywhere: others.length + 1 === this.names.length };
      }),
    ).catch((e) => {
      this.neg.failed(path, neg);
      throw e;
    });
    this.neg.made(path, neg, attr.everywhere);
    return attr.attr;
  }

  async rmdir(path: string): Promise<void> {
    path = normPath(path);
    if (path === '/') throw new FsError('EBUSY', 'cannot remove /');
    const loc = await this.locate(path);
    if (!loc.isDir) throw new FsError('ENOTDIR', `${path}: not a directory`);
    this.neg.gone(path);
    // Under the directory's namespace lock, which a heal of its copies takes too: no heal between two of
    // the steps below brings back a copy removed by an earlier one (the simulator's seed 47), and this
    // client's own lookups meanwhile heal nothing (removing).
    // A failed rmdir may have removed some copies and not put them all back (a brick cut off meanwhile):
    // the cached directory goes, so the next lookup sees them missing and heals them. Kept, entry
    // operations went by it to a brick without the directory and failed with ENOENT (--names-strict
    // --errors seed 111).
    await this.changingDirs([path], () => this.rmdirLocked(path, loc.hashed!)).catch((e: unknown) => {
      this.invalidate(path);
      throw e;
    });
  }

  /**
   * Runs `fn` under the namespace locks of directories it removes or renames (taken in path order), and
   * with this client's own heals of them off meanwhile (a heal would wait for the very lock held).
   */
  async changingDirs<T>(paths: string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(paths)].sort();
    for (const p of sorted) this.removing.set(p, (this.removing.get(p) ?? 0) + 1);
    try {
      const locked = (i: number): Promise<T> => (i === sorted.length ? fn() : this.withNamespaceLock(sorted[i], () => locked(i + 1)));
      return await locked(0);
    } finally {
      for (const p of sorted) {
        const n = this.removing.get(p)! - 1;
        if (n === 0) this.removing.delete(p);
        else this.removing.set(p, n);
      }
    }
  }

  private async rmdirLocked(path: string, hashed: string): Promise<void> {
    const entries = await this.readdirAll(path, { whole: true });
    if (entries.length > 0) throw new FsError('ENOTEMPTY', `${path}: directory not empty`);
    const d = await this.dir(path);
    const others = this.names.filter((n) => n !== hashed);
    const rs = await Promise.all(
      others.map((n) =>
        this.sv(n)
          .call('rmdir', { path, purgeLinktos: true })
          .then(
            () => null,
            (e: FsError) => ({ n, e }),
          ),
      ),
    );
    const failed = rs.filter((r) => r !== null && codeOf(r.e) !== 'ENOENT');
    if (failed.length === 0) {
      try {
        await this.sv(hashed).call('rmdir', { path, purgeLinktos: true });
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') {
          failed.push({ n: hashed, e: e as FsError });
        }
      }
    }
    if (failed.length > 0) {
      // Someone created an entry meanwhile: put the directory back where we removed it.
      const removed = others.filter((n) => !failed.some((f) => f!.n === n));
      await this.makeMissingDir(path, d.gfid, d.attr, removed).catch(bestEffort('makeMissingDir', this.log));
      for (const n of removed) {
        await this.sv(n)
          .call('setLayout', { path, layout: this.rangeOf(d, n) })
          .catch(bestEffort('setLayout', this.log));
      }
      throw failed[0]!.e;
    }
    this.invalidateTree(path);
  }

  /** Creates a regular file and opens it. Data goes to the hashed brick unless it is past min-free-disk. */
  async create(path: string, flags: number, mode: number, owner?: { uid: number; gid: number }, init?: { data: Uint8Array; close: boolean }): Promise<OpenResult> {
    return (await this.tryCreate(path, flags, mode, owner, init, false))!;
  }

  /**
   * Creates a file; `withoutLookup`: the caller skipped the lookup because the parent's layout was
   * settled. If the parent's layout turns out to have changed (a rebalance is under way), the name may
   * exist on another brick: returns null, and the caller must look it up first.
   */
  async tryCreate(path: string, flags: number, mode: number, owner: { uid: number; gid: number } | undefined, init: { data: Uint8Array; close: boolean } | undefined, withoutLookup: boolean): Promise<OpenResult | null> {
    path = normPath(path);
    const { parent, name } = splitPath(path);
    if (name === '') throw new FsError('EISDIR', '/ is a directory');
    const gfid = newGfid(this.random);
    this.mayExist(path);
    return this.withParent(parent, async (d) => {
      if (withoutLookup && this.shouldLookupEverywhere(d)) return null;
      const hashed = this.hashedBrick(d, name);
      let target = hashed;
      if (await this.isFilled(hashed).catch(() => false)) {
        const alt = await this.mostFree(hashed);
        if (alt) target = alt;
      }
      const base = { path, mode: mode & 0o7777, flags, gfid, uid: owner?.uid, gid: owner?.gid, data: init?.data, close: init?.close };
      if (target === hashed) {
        const r = await this.sv(hashed).call('create', { ...base, parentLayout: this.rangeOf(d, hashed) });
        return { located: { path, attr: r.attr, cached: hashed, hashed, isDir: false }, fd: r.fd, attr: r.attr };
      }
      await this.sv(hashed).call('mklinkto', { path, gfid, target, uid: owner?.uid, gid: owner?.gid, parentLayout: this.rangeOf(d, hashed) });
      try {
        const r = await this.sv(target).call('create', base);
        this.log('info', `${hashed} is past min-free-disk: ${path} placed on ${target}`);
        return { located: { path, attr: r.attr, cached: target, hashed, isDir: false }, fd: r.fd, attr: r.attr };
      } catch (e) {
        await this.sv(hashed).call('unlink', { path, onlyIfLinkto: true, gfid }).catch(bestEffort('unlink', this.log));
        throw e;
      }
    });
  }

  /** Opens an existing file on its data brick. */
  async openLocated(loc: Located, flags: number): Promise<OpenResult> {
    const sv = this.sv(loc.cached);
    flags &= ~(O_CREAT | O_EXCL);
    const expect = loc.isDir ? undefined : (loc.attr.gfid ?? undefined);
    try {
      const r = await sv.call('open', { path: loc.path, flags, expect });
      return { located: { ...loc, attr: r.attr }, fd: r.fd, attr: r.attr };
    } catch (e) {
      if (codeOf(e) !== 'EBUSY' || !(flags & O_TRUNC)) throw e;
    }
    // The file is being migrated: the brick wants the truncation as a write it can track.
    const r = await sv.call('open', { path: loc.path, flags: flags & ~O_TRUNC, expect });
    try {
      const attr = await sv.call('ftruncate', { fd: r.fd, size: 0 });
      return { located: { ...loc, attr }, fd: r.fd, attr };
    } catch (e) {
      await sv.call('close', { fd: r.fd }).catch(bestEffort('close', this.log));
      throw e;
    }
  }

  /**
   * Whether a create may skip the lookup: with lookup-optimize and a settled parent layout, a name that is
   * not on its hashed brick (as data or linkto) does not exist, and the brick's O_EXCL create says so.
   */
  async createWithoutLookup(path: string): Promise<boolean> {
    if (!this.live.lookupOptimize) return false;
    const d = await this.dir(splitPath(normPath(path)).parent);
    return !this.shouldLookupEverywhere(d);
  }

  /** open(2): O_CREAT, O_EXCL and O_TRUNC as POSIX has them. */
  async open(path: string, flags: number, mode = 0o666, owner?: { uid: number; gid: number }): Promise<OpenResult> {
    path = normPath(path);
    if (flags & O_CREAT && (await this.createWithoutLookup(path))) {
      try {
        const r = await this.tryCreate(path, flags & ~O_TRUNC, mode, owner, undefined, true);
        if (r) return r;
      } catch (e) {
        if (codeOf(e) !== 'EEXIST' || flags & O_EXCL) throw e;
      }
    }
    for (let attempt = 0; ; attempt++) {
      let loc: Located | null = null;
      try {
        loc = await this.locate(path);
      } catch (e) {
        if (codeOf(e) !== 'ENOENT' || !(flags & O_CREAT)) throw e;
      }
      if (loc) {
        if (flags & O_CREAT && flags & O_EXCL) throw new FsError('EEXIST', `${path}: file exists`);
        if (loc.isDir && (flags & O_ACCMODE) !== 0) throw new FsError('EISDIR', `${path}: is a directory`);
        try {
          return await this.openLocated(loc, flags);
        } catch (e) {
          if (movedAway(e) && attempt < RACE_RETRIES) continue; // raced with an unlink, a rename or a migration
          throw e;
        }
      }
      try {
        return await this.create(path, flags & ~O_TRUNC, mode, owner);
      } catch (e) {
        if (codeOf(e) === 'EEXIST' && !(flags & O_EXCL) && attempt < RACE_RETRIES) continue; // raced with another create
        throw e;
      }
    }
  }

  async unlink(path: string): Promise<void> {
    let loc: Located;
    for (let attempt = 0; ; attempt++) {
      loc = await this.locate(path);
      if (loc.isDir) throw new FsError('EISDIR', `${path}: is a directory`);
      try {
        await this.sv(loc.cached).call('unlink', { path: loc.path, gfid: loc.attr.gfid ?? undefined });
        break;
      } catch (e) {
        // A migration moved the file between the lookup and the unlink: look it up again.
        if (attempt >= RACE_RETRIES || !movedAway(e)) throw e;
      }
    }
    if (loc.hashed && loc.hashed !== loc.cached) {
      await this.sv(loc.hashed)
        .call('unlink', { path: loc.path, onlyIfLinkto: true, gfid: loc.attr.gfid ?? undefined })
        .catch((e) => {
          if (codeOf(e) !== 'ENOENT') this.log('warn', `leaving linkto ${path} on ${loc.hashed}: ${(e as Error).message}`);
        });
    }
  }

  /**
   * A data file at `path` on `brick` that the name does not reach, whose inode has another name there: a
   * rename interrupted between giving the data its new name and switching the name's hashed brick to it.
   * Removes that name (nothing is lost: the data keeps its other name). Returns whether it did.
   *
   * With `replaced`, a data file with one name that the name does not reach because it leads to another
   * file: the data of a file a rename replaced, which the renamer could not remove (its brick was away
   * longer than the rename waits). Nobody can reach it, and the rename meant it gone; left, a drain of its
   * brick moved it beside the file that replaced it, one name as two files (the simulator, seed 1010).
   * Removed if it is still that file, with no rename or migration of its own under way.
   */
  async removeUnreachableName(path: string, brick: string, gfid: string, replaced = false): Promise<boolean> {
    const { parent, name } = splitPath(normPath(path));
    const d = await this.dir(parent);
    const hashed = this.hashedBrick(d, name);
    if (hashed === brick) return false;
    return this.entryLock(hashed, parent, name, async () => {
      let loc: Located | null = null;
      try {
        loc = await this.locateOnce(path); // (settling a rename here would wait for this lock)
      } catch (e) {
        ignoreCodes(e, 'ENOENT');
      }
      if (!loc || loc.attr.gfid === gfid || loc.cached === brick) return false;
      if (replaced) {
        const now = await this.sv(brick).call('lookup', { path }).catch(nullOnFailure('lookup', this.log));
        if (!now || now.gfid !== gfid || now.renaming || now.moved || now.linkto !== undefined || now.nlink > 1 || isDirAttr(now)) return false;
      }
      await this.sv(brick).call('unlink', { path, gfid, ifOtherNames: !replaced });
      this.log('info', `removed ${path} on ${brick}: ${replaced ? 'the data of a file a rename replaced' : "an interrupted rename's unreachable name"}`);
      return true;
    });
  }

  async entryLock<T>(brick: string, dir: string, name: string, fn: () => Promise<T>): Promise<T> {
    const owner = this.owner();
    // A brick grants a blocked lock within its lock-timeout or fails it with EAGAIN: nothing was done
    // under it yet, so the operation fails as a whole and may be tried again.
    await this.sv(brick)
      .call('entrylk', { domain: DOMAIN_ENTRY, path: dir, name, type: 'wr', block: true, owner })
      .catch((e) => {
        throw codeOf(e) === 'EAGAIN' ? new FsError('EAGAIN', `${dir === '/' ? '' : dir}/${name}: another client has held it locked past the lock-timeout; nothing was changed`) : e;
      });
    try {
      return await fn();
    } finally {
      await this.sv(brick).call('entrylk', { domain: DOMAIN_ENTRY, path: dir, name, type: 'un', owner }).catch(bestEffort('entrylk', this.log));
    }
  }

  /**
   * Ends a rename its renamer left unfinished (cut off between giving the data file its new name, which
   * marked the file with the rename, and taking the old name away): under the new name's entry lock, which
   * the renamer holds through those steps, the rename is done if the new name's hashed brick already
   * leads to the file (the switch happened: the old name and its linkto go) and undone otherwise (the new
   * name goes). Either way nothing is lost and one name is left. Returns false if it could not get that
   * far (a brick away leaves the file as it is, to be settled by the next one who meets it), true when the
   * file may have changed (settled here or by someone else meanwhile) and is to be looked up again.
   */
  settleRename(loc: Located): Promise<boolean> {
    return renames.settleRename(this, loc);
  }

  /**
   * rename(2) with GlusterFS's scheme: data never moves. If the new name hashes to the data's brick, the
   * data file is renamed in place. Otherwise the data file gets the new name by a hard link, then the new
   * name's hashed brick gets a linkto pointing at the data, made aside and renamed over whatever held the
   * name there, so the new name never goes missing: readers see the old file until that step and the new
   * one after it; then the old name goes. Then the replaced file's data (on a third brick) and the old
   * name's linkto are cleaned up. A rename cut off by a lost brick is taken up again when it is back.
   */
  rename(from: string, to: string): Promise<void> {
    return renames.rename(this, from, to);
  }

  /**
   * renameat2(2) with RENAME_EXCHANGE: `from` and `to` swap their files at once. Done where it can be
   * atomic: both names' files live on one brick under those names (each name's hashed brick holds its
   * data: no linkto), which swaps them with one renameat2, under both names' entry locks there (so no
   * rename of this client or another comes between). Anything else answers EXDEV, as between two file
   * systems: a directory (its copies on every brick cannot be swapped at once), or names on two bricks
   * (a reader could meet the new file at one name and still the old at the other). A file whose
   * migration committed meanwhile is looked up again (EMOVED), and so is one replaced by another (ESTALE).
   */
  exchange(from: string, to: string): Promise<void> {
    return renames.exchange(this, from, to);
  }

  async link(existing: string, newPath: string): Promise<Attr> {
    for (let i = 0; ; i++) {
      try {
        return await this.linkOnce(existing, newPath);
      } catch (e) {
        // The file moved between its lookup and the link (a migration: a symlink's, FIFO's or socket's old
        // name goes once its copy is made on dst): look it up again. The simulator found it, seed 39.
        if (codeOf(e) !== 'ENOENT' || i >= 2) throw e;
      }
    }
  }

  private async linkOnce(existing: string, newPath: string): Promise<Attr> {
    newPath = normPath(newPath);
    const src = await this.locate(existing);
    if (src.isDir) throw new FsError('EPERM', `${existing}: hard links to directories are not allowed`);
    const { parent, name } = splitPath(newPath);
    this.mayExist(newPath);
    return this.withParent(parent, async (d) => {
      const hashed = this.hashedBrick(d, name);
      const gfid = src.attr.gfid ?? undefined;
      if (hashed !== src.cached) {
        await this.sv(hashed)
          .call('mklinkto', { path: newPath, gfid: needGfid(gfid, `/${src.path}`), target: src.cached, uid: src.attr.uid, gid: src.attr.gid, parentLayout: this.rangeOf(d, hashed) })
          .catch(async (e: unknown) => {
            // The file is moving to that very brick (a symlink's, FIFO's or socket's copy is made there
            // before its old name goes), so its gfid is in use there: looked up again (link), it is found
            // there and linked there. The simulator found it (names, seed 43).
            if (
              codeOf(e) === 'EEXIST' &&
              (await this.locateOnce(existing).then(
                (l) => l.cached !== src.cached,
                () => false,
              ))
            )
              throw new FsError('ENOENT', `${existing}: moved meanwhile`);
            throw e;
          });
        try {
          return await this.sv(src.cached).call('link', { from: src.path, to: newPath });
        } catch (e) {
          await this.sv(hashed).call('unlink', { path: newPath, onlyIfLinkto: true, gfid }).catch(bestEffort('unlink', this.log));
          throw e;
        }
      }
      return this.sv(src.cached).call('link', { from: src.path, to: newPath, parentLayout: this.rangeOf(d, hashed) });
    });
  }

  async symlink(target: string, path: string, owner?: { uid: number; gid: number }): Promise<Attr> {
    return this.makeOnHashed('symlink', path, { target }, owner);
  }

  /**
   * A FIFO, a socket or a device node (`mode`: type and permission bits; `rdev`: a device node's device),
   * on the name's hashed brick like a symlink.
   */
  async mknod(path: string, mode: number, owner?: { uid: number; gid: number }, rdev?: number): Promise<Attr> {
    return this.makeOnHashed('mknod', path, rdev ? { mode, rdev } : { mode }, owner);
  }

  /** A new name that has no data elsewhere (a symlink, a FIFO, a socket, a device): made on its hashed brick only. */
  private async makeOnHashed(op: 'symlink' | 'mknod', path: string, args: object, owner?: { uid: number; gid: number }): Promise<Attr> {
    path = normPath(path);
    const { parent, name } = splitPath(path);
    const gfid = newGfid(this.random);
    this.mayExist(path);
    return this.withParent(parent, async (d) => {
      const hashed = this.hashedBrick(d, name);
      return this.sv(hashed).call(op, { path, ...args, gfid, uid: owner?.uid, gid: owner?.gid, parentLayout: this.rangeOf(d, hashed) });
    });
  }

  async readlink(path: string): Promise<string> {
    const loc = await this.locate(path);
    const r = await this.sv(loc.cached).call('readlink', { path: loc.path });
    return r.target;
  }

  // --- attributes ------------------------------------------------------------------------------------
  async stat(path: string): Promise<Attr> {
    return (await this.locate(path)).attr;
  }

  /**
   * chmod/chown/utimes/truncate: on the data brick; on every brick for a directory. `ctime`: the change
   * time moves, nothing else need change (as chown(2) with -1 for both does).
   */
  async setattr(path: string, attrs: { mode?: number; uid?: number; gid?: number; atime?: [number, number]; mtime?: [number, number]; size?: number; ctime?: boolean }): Promise<Attr> {
    const loc = await this.locate(path);
    if (loc.isDir) {
      if (attrs.size !== undefined) throw new FsError('EISDIR', `${path}: is a directory`);
      const first = loc.hashed ?? loc.cached;
      const a = await this.sv(first).call('setattr', { path: loc.path, ...attrs });
      await Promise.all(this.names.filter((n) => n !== first).map((n) => this.sv(n).call('setattr', { path: loc.path, ...attrs })));
      this.invalidate(loc.path);
      return a;
    }
    return this.sv(loc.cached).call('setattr', { path: loc.path, ...attrs });
  }

  // --- readdir ----------------------------------------------------------------------------------------
  private async readdirBrick(brick: string, path: string): Promise<DirEntryAttr[]> {
    const out: DirEntryAttr[] = [];
    let offset = 0;
    for (;;) {
      const r = await this.sv(brick).call('readdir', { path, offset, limit: 2000 });
      out.push(...r.entries);
      if (r.eof || r.entries.length === 0) return out;
      offset += 2000;
    }
  }

  /** All entries of a directory, merged over bricks: linkto files hidden, directories listed once. */
  async readdirAll(path: string, opts: { whole?: boolean } = {}): Promise<DirEntryAttr[]> {
    path = normPath(path);
    const d = await this.dir(path);
    if (opts.whole && d.down?.length) throw new FsError('ENOTCONN', `${path}: bricks down: ${d.down.join(', ')}`);
    // A brick that went down since shows nothing, as one found down by dir() (its names are out of reach);
    // `whole`: the listing is exact or fails.
    const per = await Promise.all(
      [...new Set(d.layout.map((e) => e.brick))].map((b) =>
        this.readdirBrick(b, path).catch((e: unknown) => {
          // A copy missing there holds no names: not healed while this client's rmdir or rename holds it,
          // or a heal that failed (a brick added since the directory was made, and another client holding
          // the namespace lock past the lock-timeout). Listing it failed the whole listing with ENOENT,
          // which readdir(3) takes for the end of the directory: an empty directory on a mount.
          if (codeOf(e) === 'ENOENT' && (this.removing.has(path) || d.missing?.includes(b))) return [] as DirEntryAttr[];
          if (opts.whole || !brickUnreachable(e)) throw e;
          this.log('warn', `${path}: brick ${b} is down; listing what the others hold`);
          return [] as DirEntryAttr[];
        }),
      ),
    );
    const seen = new Map<string, DirEntryAttr>();
    const movedOnly = new Set<string>();
    for (const list of per) {
      for (const e of list) {
        if (e.attr.linkto !== undefined) continue;
        // A src copy whose migration committed stands for the file only until dst's copy is installed.
        if (e.attr.moved) {
          movedOnly.add(e.name);
          continue;
        }
        const prev = seen.get(e.name);
        if (prev && !isDirAttr(e.attr) && !isDirAttr(prev.attr)) {
          this.log('warn', `${path}/${e.name} has data on more than one brick`);
        }
        if (!prev) {
          seen.set(e.name, e);
          if (isDirAttr(e.attr)) this.dirs.hint(joinPath(path, e.name));
        }
        // A directory is on every brick: its times are its copies' latest, as a stat gives them.
        else if (isDirAttr(e.attr) && isDirAttr(prev.attr)) seen.set(e.name, { ...prev, attr: latestTimes(prev.attr, [e.attr]) });
      }
    }
    // A record with no data file beside it: the file, unless the migration's copy was installed and the
    // file renamed or unlinked since (its lookup removes such a stale record). Which one it is cannot be
    // told while a brick of the lookup is out of reach: the listing fails then, as it does when a brick
    // cannot be listed (rather than show a file that may be gone, or hide one that may be there).
    for (const name of movedOnly) {
      if (seen.has(name)) continue;
      try {
        const loc = await this.locate(joinPath(path, name));
        if (!loc.isDir) seen.set(name, { name, attr: loc.attr });
      } catch (err) {
        if (codeOf(err) !== 'ENOENT') throw err;
      }
    }
    // The bricks answer at different instants: a file can be a linkto on one brick's answer and already
    // gone from the other's (a migration's install and cleanup fell between them). A name that is only a
    // linkto is looked up before it is left out (S4: a file is listed exactly once).
    const linktoOnly = new Set<string>();
    for (const list of per) for (const e of list) if (e.attr.linkto !== undefined && !seen.has(e.name)) linktoOnly.add(e.name);
    for (const name of linktoOnly) {
      const loc = await this.locate(joinPath(path, name)).catch(nullOnFailure('locate', this.log));
      if (loc && !loc.isDir) seen.set(name, { name, attr: loc.attr });
    }
    return [...seen.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  // --- xattrs and statfs -------------------------------------------------------------------------------
  async getxattr(path: string, name: string): Promise<Buffer> {
    const loc = await this.locate(path);
    return (await this.sv(loc.cached).call('getxattr', { path: loc.path, name })).value;
  }

  async listxattr(path: string): Promise<string[]> {
    const loc = await this.locate(path);
    return (await this.sv(loc.cached).call('listxattr', { path: loc.path })).names;
  }

  async setxattr(path: string, name: string, value: Uint8Array, flags: { create?: boolean; replace?: boolean } = {}): Promise<void> {
    const loc = await this.locate(path);
    const targets = loc.isDir ? [loc.cached, ...this.names.filter((n) => n !== loc.cached)] : [loc.cached];
    for (const t of targets) await this.sv(t).call('setxattr', { path: loc.path, name, value, ...flags });
  }

  async removexattr(path: string, name: string): Promise<void> {
    const loc = await this.locate(path);
    const targets = loc.isDir ? [loc.cached, ...this.names.filter((n) => n !== loc.cached)] : [loc.cached];
    for (const t of targets) await this.sv(t).call('removexattr', { path: loc.path, name });
  }

  async statfs(): Promise<StatFsReply> {
    // Bricks on one file system share its space: counted once (GlusterFS counts each brick).
    const seen = new Set<string>();
    const rs = (await this.everywhere('statfs', {})).filter((s) => s.fsid === undefined || (!seen.has(s.fsid) && !!seen.add(s.fsid)));
    const bsize = 4096;
    const sum = (f: (s: StatFsReply) => number) => rs.reduce((acc, s) => acc + Math.floor((f(s) * s.bsize) / bsize), 0);
    return {
      bsize,
      blocks: sum((s) => s.blocks),
      bfree: sum((s) => s.bfree),
      bavail: sum((s) => s.bavail),
      files: rs.reduce((a, s) => a + s.files, 0),
      ffree: rs.reduce((a, s) => a + s.ffree, 0),
    };
  }

  /** Used by tests and tools: the hashed brick of a path in its parent's current layout. */
  async hashedOf(path: string): Promise<string> {
    path = normPath(path);
    const { parent, name } = splitPath(path);
    return this.hashedBrick(await this.dir(parent), name);
  }
}

/** A file operation's error that means the file is not where its lookup found it any more. */
export function movedAway(e: unknown): boolean {
  const code = codeOf(e);
  return code === 'ENOENT' || code === 'ESTALE' || code === EMOVED;
}
