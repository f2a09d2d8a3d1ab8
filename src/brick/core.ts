/** The brick's shared state and helpers (see BrickCore). */
import { PEER_CALL_DEFAULT_S, type PeerBricks } from './peers.js';
import { ELAYOUT, EMOVED, FsError, codeOf, ignoreCodes, rethrowBug } from '../common/errors.js';
import type { Clock, Random } from '../common/env.js';
import { ROOT_GFID, gfidFromBytes, gfidToBytes } from '../common/gfid.js';
import { COMMIT_HASH_INVALID, decodeRanges, sameRanges, type LayoutRange } from '../wire/layout-xattr.js';
import { LIMIT_DEFAULTS, LimitLog, type BrickLimits } from '../wire/limits.js';
import { LIMIT_OPTION_KEYS } from '../wire/limits.js';
import type { Attr } from '../wire/types.js';
import { O_DIRECTORY, O_RDONLY, S_IFDIR, S_ISGID, S_ISVTX, type Stat, type Storage } from '../storage/storage.js';
import { LockTable } from './locks.js';
import { SrcMigrations } from '../migration/src-state.js';
import { parseMoved, type Moved } from '../migration/records.js';
import { DirWatches, watchedStorage, type Watcher } from './watch.js';
import { HANDLE_DIR, LINKTO_MODE, RENAME_DIR, parentOf, handlePath, isReg, isDir, xattrNames, encodeRootAttr, decodeRootAttr, decodeLinkto, type XattrNames, type RootAttr } from './format.js';
import { linkHandle } from './handles.js';
import { unlockWriters } from './ops/mig-src.js';
import { getTopology } from './ops/volume.js';

export interface BrickConfig {
  /** The brick's subvolume name, as linkto xattrs name it (e.g. `vol-client-0`). */
  name: string;
  volumeId: string;
  /** `trusted.` when running as root (GlusterFS's namespace), `user.` otherwise. */
  xattrPrefix: string;
  /** Bounds on clients' fds and locks (wire/limits.ts); the defaults without. */
  limits?: BrickLimits;
  /**
   * Which brick of the volume this directory is (the CLI's spec keeps a uuid per brick; default: the
   * name). The first start claims the directory with it (`<prefix>dhtfs.brick-id` on the root); a
   * directory claimed by another brick is refused, so one directory never serves as two bricks.
   */
  brickId?: string;
}

export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;

export interface OpenFile {
  h: number;
  gfid: string | null;
  flags: number;
  /** A migration copy on dst (not in the namespace yet). */
  tempRel?: string;
  /** The file was migrated away and its src copy removed: every operation but close says EMOVED. */
  moved?: Moved;
}

export interface Session extends Watcher {
  id: number;
  remote: string;
  client: string;
  fds: Map<number, OpenFile>;
  nextFd: number;
  /** The session proved the volume's administrative secret: it may change the volume (topology, commit hash). */
  admin: boolean;
}

/**
 * What every part of the brick shares: its storage (watched, watch.ts), xattr names, sessions, fds,
 * migrations at src and locks, and the helpers over paths, attributes and the migration rules. The
 * operations (ops/*) are functions of a BrickCore; the Brick (brick.ts) dispatches requests to them.
 */
export class BrickCore {
  /** The names of the format's xattrs (format.ts). */
  readonly X: XattrNames;
  /** Migrations with this brick as src: leases, dirty ranges, freezes, commit records (migration.ts). */
  readonly mig: SrcMigrations;
  readonly locks: LockTable;
  /** The limits in force (wire/limits.ts): the config's, and `volume set` options from the topology. */
  readonly limits: BrickLimits;
  /** The limits this brick started with, which an option's reset (or -1) brings back. */
  readonly ownLimits: BrickLimits;
  readonly sessions = new Map<number, Session>();
  nextSession = 1;
  /** The fds open on each gfid, across sessions (fds.ts keeps it; asserted against the sessions' fds). */
  readonly openCount = new Map<string, number>();
  /** The fds open across every session (fds.ts keeps it; asserted against the sessions' fds). */
  fdsOpen = 0;
  /** The handle directories (`.glusterfs/ab`, `.glusterfs/ab/cd`, and RENAME_DIR) known to exist. */
  readonly handleDirs = new Set<string>();
  /** Clients' watches of directories (watch.ts): every change of a name goes through `st`, which reports it. */
  readonly watches: DirWatches;
  readonly st: Storage;
  /** Migrations' holds on files' gate and writers' lock (the handle each is taken through), by gfid. */
  readonly writerLocks = new Map<string, number>();

  /** Connections to the volume's other bricks (migFetch); none in a brick that was given none. */
  peers?: PeerBricks;
  /**
   * auth.ssl-allow from the topology: the certificate names (CN) whose clients this brick serves on a TLS
   * volume; null: every certificate of the CA (GlusterFS's `*`).
   */
  sslAllow: string[] | null = null;
  /** A call to a peer brick waits this long for its answer (the volume's network.ping-timeout; 0: for ever). */
  peerTimeoutMs = PEER_CALL_DEFAULT_S * 1000;

  constructor(
    st: Storage,
    readonly cfg: BrickConfig,
    readonly clock: Clock,
    random: Random,
    readonly log: LogFn = () => {},
  ) {
    this.watches = new DirWatches(clock);
    this.st = watchedStorage(st, this.watches, (rel) => rel === HANDLE_DIR || rel.startsWith(`${HANDLE_DIR}/`));
    this.X = xattrNames(cfg.xattrPrefix);
    // Shared with the connection layer (server.ts), so that `volume set limit.*` reaches it too.
    this.limits = cfg.limits ?? { ...LIMIT_DEFAULTS };
    this.ownLimits = { ...this.limits };
    this.locks = new LockTable(clock, this.limits);
    this.mig = new SrcMigrations(
      clock,
      random,
      (m) => log('info', m),
      (gfid) => unlockWriters(this, gfid),
    );
  }

  /** The volume root's mode and owner (closeRoot recorded them; setattr of the root changes them). */
  rootAttr(): RootAttr | null {
    return decodeRootAttr(this.st.getxattr('', this.X.rootAttr));
  }

  writeRootAttr(r: RootAttr): void {
    this.st.setxattr('', this.X.rootAttr, encodeRootAttr(r));
  }

  /** A directory's stat as the volume shows it: the real one, but the root's mode and owner from `rootAttr`. */
  shown(rel: string, st: Stat): Stat {
    if (rel !== '') return st;
    const r = this.rootAttr();
    return r ? { ...st, mode: S_IFDIR | r.mode, uid: r.uid, gid: r.gid } : st;
  }

  /** fsync(2) of a directory: its entries (and its own attributes and xattrs) are durable. */
  async fsyncDir(rel: string): Promise<void> {
    const h = this.st.open(rel, O_RDONLY | O_DIRECTORY, 0);
    try {
      await this.st.fsync(h, false);
    } finally {
      this.st.close(h);
    }
  }

  /**
   * The private directory new names are made whole in (RENAME_DIR), made once per brick process: a
   * failed mkdir costs an exception, and every create would pay one.
   */
  ensureRenameDir(): void {
    if (this.handleDirs.has(RENAME_DIR)) return;
    this.ensureDir(RENAME_DIR, 0o700);
    this.st.pinDir?.(RENAME_DIR); // again when made again: the pin was of the folder that went
    this.handleDirs.add(RENAME_DIR);
  }

  /**
   * Makes a private name with `make` (which fails with EEXIST, changing nothing, where the name is
   * taken): a leftover of a crash under that name is removed with `remove` and `make` runs again. The
   * common case (no leftover) costs one call, not a removal that fails first. ENOENT: the private
   * directory went since it was made (ensureRenameDir remembers it): made again.
   */
  makeFresh<T>(tmp: string, remove: () => void, make: () => T): T {
    try {
      return make();
    } catch (e) {
      ignoreCodes(e, 'EEXIST', 'ENOENT');
      if (codeOf(e) === 'ENOENT') {
        this.handleDirs.delete(RENAME_DIR);
        this.ensureRenameDir();
        return make();
      }
    }
    remove(); // a leftover of a crash before the name was linked or renamed into place
    return make();
  }

  ensureDir(p: string, mode: number): void {
    try {
      this.st.mkdir(p, mode);
    } catch (e) {
      ignoreCodes(e, 'EEXIST');
    }
  }

  /**
   * A validated path (its decoder in wire/ops.ts checked its form), as the ops pass it on. Every
   * component above the last must be a real directory (a symlink there could lead outside the brick):
   * the storage checks it in each call, in the kernel where it can (ELOOP for a symlink, ENOTDIR for a
   * file; storage.ts), so the path is no longer walked here, one lstat per component per request.
   */
  walk(rel: string): string {
    return rel;
  }

  readGfid(rel: string): string | null {
    const b = this.st.getxattr(rel, this.X.gfid);
    return b && b.length === 16 ? gfidFromBytes(b) : null;
  }

  readLinkto(rel: string): string | null {
    return decodeLinkto(this.st.getxattr(rel, this.X.linkto));
  }

  attr(rel: string, st: Stat, gfid?: string | null): Attr {
    if (rel !== '' && gfid === ROOT_GFID) rel = ''; // an fd on the root names it by its handle
    st = this.shown(rel, st);
    const a: Attr = {
      gfid: gfid === undefined ? this.readGfid(rel) : gfid,
      ino: st.ino,
      mode: st.mode,
      // A file's handle is a name of its own; the root's .glusterfs is a subdirectory no one sees.
      nlink: isDir(st) ? (rel === '' ? Math.max(2, st.nlink - 1) : st.nlink) : Math.max(0, st.nlink - 1),
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      blocks: st.blocks,
      atime: st.atime,
      mtime: st.mtime,
      ctime: st.ctime,
    };
    if (st.rdev) a.rdev = st.rdev;
    if (st.mode === LINKTO_MODE) {
      const l = this.readLinkto(rel);
      if (l !== null) a.linkto = l;
    } else if (isReg(st) && rel !== '') {
      if ((st.mode & (S_ISGID | S_ISVTX)) === (S_ISGID | S_ISVTX)) {
        // GlusterFS's phase 1 of a (legacy) migration: S+T and a linkto xattr naming dst.
        const l = this.readLinkto(rel);
        if (l !== null) a.phase1To = l;
      }
      if (gfid === undefined) {
        const m = this.movedOf(rel, a.gfid);
        if (m) a.moved = m;
        if (a.nlink > 1) {
          const r = this.renameIntentOf(rel);
          if (r) a.renaming = r;
        }
      }
    } else if (!isDir(st) && rel !== '' && gfid === undefined && a.nlink > 1) {
      // A symlink, FIFO, socket or device renamed as files are (link `intent`): its mark shows too, so
      // that whoever meets it settles the rename. Not shown, a rename cut off by an EIO left both names
      // for good (--names-strict --errors seed 19).
      const r = this.renameIntentOf(rel);
      if (r) a.renaming = r;
    } else if (isDir(st)) {
      const b = this.st.getxattr(rel, this.X.dht);
      a.layout = null;
      if (b) {
        try {
          a.layout = decodeRanges(b);
        } catch (e) {
          a.layoutErr = (e as Error).message;
        }
      }
    }
    return a;
  }

  attrOf(rel: string): Attr {
    return this.attr(rel, this.st.lstat(rel));
  }

  readLayout(rel: string): LayoutRange[] | null {
    const b = this.st.getxattr(rel, this.X.dht);
    if (!b) return null;
    try {
      return decodeRanges(b);
    } catch {
      return null;
    }
  }

  /**
   * Entry operations (and lookups that find nothing) carry the parent's ranges as the client knows them,
   * and lookups the layout's commit hash too; a stale client must refresh.
   */
  checkParentLayout(rel: string, want: LayoutRange[] | undefined, commit: number | undefined): void {
    if (want === undefined) return;
    const have = this.readLayout(parentOf(rel));
    if (!sameRanges(have, want)) throw new FsError(ELAYOUT, `layout of the parent of /${rel} on ${this.cfg.name} has changed`);
    if (commit !== undefined && commit !== (have?.[0]?.commit ?? COMMIT_HASH_INVALID)) {
      throw new FsError(ELAYOUT, `commit hash of the parent of /${rel} on ${this.cfg.name} has changed`);
    }
  }

  /**
   * A new name, made whole before it is one: `make` makes it under a private name (and returns what it
   * opened, if anything), which gets its gfid and owner and is then linked into place (link(2) fails with
   * EEXIST where the name is taken, as O_EXCL does); then its handle. So a power loss or a failed call
   * never leaves the name without its gfid (a file no rebalance could move, and that a drain left on its
   * brick: the simulator found it, seed 33). The private name goes before the reply: where its unlink fails
   * after the link (an EIO), the name goes again, as the call failed; left, the file kept two links, and
   * the rebalancer left it as a hard link (a linkto for good, seed 5756) and renames marked it (seed 6476).
   */
  makeWhole<T>(rel: string, gfid: string, uid: number | undefined, gid: number | undefined, make: (tmp: string) => T): T {
    this.ensureRenameDir();
    const tmp = `${RENAME_DIR}/${gfid}.new`;
    const made = this.makeFresh(
      tmp,
      () => this.st.unlink(tmp),
      () => make(tmp),
    );
    try {
      this.setGfid(tmp, gfid);
      const g = this.newGid(rel, gid);
      if (uid !== undefined || g !== undefined) this.st.lchown(tmp, uid ?? -1, g ?? -1);
      this.st.link(tmp, rel);
    } catch (e) {
      this.unlinkQuietly(tmp);
      throw e;
    }
    try {
      this.st.unlink(tmp);
      linkHandle(this, rel, gfid);
    } catch (e) {
      this.unlinkQuietly(rel);
      throw e;
    }
    return made;
  }

  /** Undoes a name made by a call that is failing: an error here is dropped, the call's own one matters. */
  unlinkQuietly(rel: string): void {
    try {
      this.st.unlink(rel);
    } catch {
      /* keep the original error */
    }
  }

  /** A new name was just made: its gfid, `more`, its handle and owner; if any fails, the name goes again. */
  adoptNew(rel: string, gfid: string, uid: number | undefined, gid: number | undefined, more?: () => void): void {
    try {
      this.setGfid(rel, gfid);
      more?.();
      linkHandle(this, rel, gfid);
      gid = this.newGid(rel, gid);
      if (uid !== undefined || gid !== undefined) this.st.lchown(rel, uid ?? -1, gid ?? -1);
    } catch (e) {
      this.unlinkQuietly(rel);
      throw e;
    }
  }

  /**
   * Runs `fn`, a change of `rel`'s directory's entries that no user made (a migration, a repair, a new
   * brick's copy of a directory): the directory keeps its access and modification times, which the
   * volume shows as its copies' latest (its ctime moves, as it must). A brick runs one such change at a
   * time, so no user's change falls between the reading and the setting.
   */
  keepingTimes<T>(rel: string, keep: boolean, fn: () => T): T {
    if (!keep) return fn();
    const parent = parentOf(rel);
    const was = this.st.lstat(parent);
    try {
      return fn();
    } finally {
      try {
        this.st.lutimes(parent, was.atime, was.mtime);
      } catch (e) {
        rethrowBug(e); // the directory went meanwhile: nothing to keep
      }
    }
  }

  /**
   * The group of a name just made for a caller of group `gid`: the parent's where the parent is
   * set-group-ID, as the kernel gives it (this process made the name as root, so the caller's group
   * is set after).
   */
  newGid(rel: string, gid: number | undefined): number | undefined {
    const parent = parentOf(rel);
    // The kernel gives a name made without a caller's group its set-group-ID parent's group, but the
    // volume root's bit and group are in rootAttr only.
    if (gid === undefined && parent !== '') return undefined;
    const p = this.shown(parent, this.st.lstat(parent));
    return p.mode & S_ISGID ? p.gid : gid;
  }

  setGfid(rel: string, gfid: string): void {
    this.st.setxattr(rel, this.X.gfid, gfidToBytes(gfid));
  }

  /** The user xattrs of `pairs` onto `rel` (a migration's copy); the volume's own and other namespaces are skipped. */
  copyUserXattrs(rel: string, pairs: [string, Uint8Array][]): void {
    for (const [n, v] of pairs) {
      if (!n.startsWith('user.') || this.X.reserved.some((r) => n.startsWith(r))) continue;
      this.st.setxattr(rel, n, v);
    }
  }

  /** The commit record of a file at src, if its commit is in force. */
  /** The rename this file's second name belongs to, while it is not finished (see link). */
  renameIntentOf(rel: string): Attr['renaming'] | null {
    const b = this.st.getxattr(rel, this.X.rename);
    if (!b) return null;
    try {
      const r = JSON.parse(b.toString()) as { from?: unknown; to?: unknown; replaced?: { brick: string; gfid?: string } };
      return typeof r.from === 'string' && typeof r.to === 'string' ? { from: r.from, to: r.to, ...(r.replaced ? { replaced: r.replaced } : {}) } : null;
    } catch {
      return null;
    }
  }

  /** Forgets the file's unfinished rename (no error if there is none). */
  clearRenameIntent(gfid: string): void {
    try {
      this.st.removexattr(handlePath(gfid), this.X.rename);
    } catch (e) {
      ignoreCodes(e, 'ENODATA', 'ENOENT');
    }
  }

  movedOf(rel: string, gfid: string | null): Moved | null {
    const known = this.mig.movedTo(gfid);
    if (known) return known;
    const m = parseMoved(this.st.getxattr(rel, this.X.migration));
    if (!m || !gfid || this.mig.committing(gfid)) return null;
    this.mig.rememberMoved(gfid, m);
    return m;
  }

  refuseMoved(rel: string, gfid: string | null): void {
    const m = this.movedOf(rel, gfid);
    if (m) throw new FsError(EMOVED, `/${rel} was migrated to ${m.dst}`, { ...m });
  }

  /**
   * Runs a change to a file under the migration rules: refused if the file moved, held while a
   * migration is frozen, and recorded in the migration's dirty record (`range`, or attributes).
   */
  async change<T>(gfid: string | null, fn: () => Promise<T> | T, range: (r: T) => [number, number] | null): Promise<T> {
    for (;;) {
      const e = this.mig.enter(gfid);
      if (e instanceof Promise) {
        await e;
        continue;
      }
      let r: T;
      try {
        r = await fn();
      } catch (err) {
        e(null);
        throw err;
      }
      e(range(r));
      return r;
    }
  }

  openFdCount(gfid: string): number {
    return this.openCount.get(gfid) ?? 0;
  }

  /** Limits hit, logged once per limit per 10 s with the client named. */
  limitLog?: LimitLog;

  limitHit(limit: string, s: Session, detail: string): void {
    this.limitLog ??= new LimitLog(this.clock, (msg, extra) => this.log('warn', msg, extra));
    this.limitLog.hit(limit, s, detail);
  }

  /** Changing the volume needs the admin role (a session without it is refused, and logged). Without a session: the brick's own caller. */
  needAdmin(s: Session | undefined, op: string): void {
    if (!s || s.admin) return;
    this.limitHit('admin', s, `${op} refused: the session has no admin credential`);
    throw new FsError('EPERM', `${op} needs the volume's admin credential`);
  }

  /** The volume's options that bricks take up (`volume set`): the lock-timeout, the ping-timeout (calls to peer bricks), and the limits (`limit.*`). */
  applyOptions(o: unknown): void {
    const opts = (o && typeof o === 'object' ? o : {}) as Record<string, unknown>;
    const v = opts.lockTimeout;
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) this.limits.lockTimeoutMs = Math.round(v * 1000);
    const ping = opts.pingTimeout;
    this.peerTimeoutMs = typeof ping === 'number' && Number.isFinite(ping) && ping >= 0 ? Math.round(ping * 1000) : PEER_CALL_DEFAULT_S * 1000;
    for (const k of LIMIT_OPTION_KEYS) {
      const n = opts[k];
      const want = typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : this.ownLimits[k];
      if (this.limits[k] !== want) this.log('info', `limit ${k}: ${want}${want === this.ownLimits[k] ? " (the brick's own)" : ' (volume option)'}`);
      this.limits[k] = want;
    }
  }

  /** Takes up the options of the topology stored on this brick (at start). */
  loadOptions(): void {
    this.applyTopology(getTopology(this).topology);
  }

  /** Takes up what a topology sets beyond its bricks: its options, and auth.ssl-allow. */
  applyTopology(t: unknown): void {
    const o = (t && typeof t === 'object' ? t : {}) as { options?: unknown; sslAllow?: unknown };
    this.applyOptions(o.options);
    const allow = Array.isArray(o.sslAllow) && o.sslAllow.every((x) => typeof x === 'string') ? (o.sslAllow as string[]) : null;
    const next = allow && !allow.includes('*') ? allow : null;
    if (JSON.stringify(next) !== JSON.stringify(this.sslAllow)) this.log('info', `auth.ssl-allow: ${next ? next.join(',') : '*'}`);
    this.sslAllow = next;
  }

  /**
   * Whether a session of a TLS client with certificate `name` (of unit `unit`) is served: GlusterFS's
   * auth.ssl-allow on the brick. The pool's own certificates (unit `node`: node daemons and peer bricks)
   * and sessions that proved the volume's admin secret (the CLI, a rebalance) are always; a connection
   * without a certificate (plain TCP) is not concerned. A reason to refuse, or null.
   */
  certRefused(name: string | undefined, unit: string | undefined, admin: boolean): string | null {
    if (name === undefined || this.sslAllow === null || admin || unit === 'node' || this.sslAllow.includes(name)) return null;
    return `certificate ${name} is not in the volume's auth.ssl-allow (${this.sslAllow.join(',')})`;
  }
}
